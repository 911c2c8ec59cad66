// `weightctl load --tp-rules FILE`: sharding rules from a JSON file, a list of
//   {"pattern": REGEX, "split": "column" | "row" | "vocab" | "replicate", "allow_uneven": BOOL}
// (allow_uneven optional, false by default), tried in order before the built-in
// rules (docs/tensor-parallel.md). Thread-safe (pure functions).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "weightd/v1/loader.pb.h"

namespace weightd::ctl {

// INVALID_ARGUMENT naming the rule's index for anything else (unknown keys included).
absl::StatusOr<std::vector<v1::ShardingRule>> ParseShardingRules(std::string_view json);
// NOT_FOUND when the file cannot be read; messages start with the path.
absl::StatusOr<std::vector<v1::ShardingRule>> ReadShardingRules(const std::string& path);

}  // namespace weightd::ctl
