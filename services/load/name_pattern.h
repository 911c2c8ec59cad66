// A regular expression from a client (a sharding rule's pattern, an ignore list's
// "re:" entry), matched against the whole tensor name. RE2 syntax: matching takes
// time linear in the name, so no pattern can backtrack catastrophically on a gRPC
// thread; a length limit and a memory bound keep compilation small too.
// Immutable after Compile, so thread-safe; copies share the compiled program.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace re2 {
class RE2;
}

namespace weightd {

// Longest pattern accepted, in bytes.
inline constexpr size_t kMaxNamePatternBytes = 1024;
// RE2's max_mem for one pattern: about what a 1 KiB pattern needs with room to
// spare; a pattern whose program would not fit fails to compile.
inline constexpr int64_t kNamePatternMaxMemBytes = 1 << 20;

class NamePattern {
 public:
  // INVALID_ARGUMENT "pattern '<shown>' <reason>" for a malformed pattern or one
  // over kMaxNamePatternBytes or kNamePatternMaxMemBytes. `shown` is the text the
  // client wrote (for an ignore entry, with its "re:"), quoted at most 64 bytes long.
  static absl::StatusOr<NamePattern> Compile(absl::string_view pattern, absl::string_view shown);

  // Whether the pattern matches all of `name`, not just a part of it.
  bool FullMatch(absl::string_view name) const;

 private:
  explicit NamePattern(std::shared_ptr<const re2::RE2> re) : re_(std::move(re)) {}
  std::shared_ptr<const re2::RE2> re_;
};

}  // namespace weightd
