// The `weight_map` of a sharded checkpoint's model.safetensors.index.json: which
// shard file holds each tensor. The index is untrusted input (it may come from a
// download): it is size-bounded and every entry must name a plain .safetensors
// file in the checkpoint's own directory. Thread-safe (no state).
#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"

namespace weightd {

inline constexpr size_t kMaxIndexBytes = size_t{64} << 20;

// tensor name -> shard file. INVALID_ARGUMENT naming what is wrong: not JSON, no
// weight_map object, an entry that is not a plain file name ending in .safetensors,
// an empty map, or more than kMaxIndexBytes of text.
absl::StatusOr<std::map<std::string, std::string>> ParseWeightMap(const std::string& index_json);

// A name that stays in its directory: not empty, no '/', no NUL, not "." or "..".
bool IsPlainFileName(const std::string& name);

}  // namespace weightd
