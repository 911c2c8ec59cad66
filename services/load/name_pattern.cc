#include "services/load/name_pattern.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "re2/re2.h"

namespace weightd {
namespace {

constexpr size_t kShownBytes = 64;

// The client's text, cut at a UTF-8 character boundary when long, so an error
// about a 1 MiB pattern does not repeat it.
std::string Shown(absl::string_view text) {
  if (text.size() <= kShownBytes) return std::string(text);
  size_t end = kShownBytes;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return absl::StrCat(text.substr(0, end), "...");
}

}  // namespace

absl::StatusOr<NamePattern> NamePattern::Compile(absl::string_view pattern, absl::string_view shown) {
  const std::string quoted = absl::StrCat("pattern '", Shown(shown), "'");
  if (pattern.size() > kMaxNamePatternBytes) {
    return absl::InvalidArgumentError(absl::StrCat(quoted, " is ", pattern.size(), " bytes, over the limit of ",
                                                   kMaxNamePatternBytes));
  }
  RE2::Options options;
  options.set_log_errors(false);
  options.set_max_mem(kNamePatternMaxMemBytes);
  auto re = std::make_shared<const RE2>(re2::StringPiece(pattern.data(), pattern.size()), options);
  if (!re->ok()) {
    return absl::InvalidArgumentError(absl::StrCat(quoted, " is not a regular expression: ", re->error()));
  }
  return NamePattern(std::move(re));
}

bool NamePattern::FullMatch(absl::string_view name) const {
  return RE2::FullMatch(re2::StringPiece(name.data(), name.size()), *re_);
}

}  // namespace weightd
