#include "client/weightctl/tp_rules_file.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace weightd::ctl {
namespace {

absl::StatusOr<v1::Split> ParseSplit(const std::string& split) {
  if (split == "column") return v1::SPLIT_COLUMN;
  if (split == "row") return v1::SPLIT_ROW;
  if (split == "vocab") return v1::SPLIT_VOCAB;
  if (split == "replicate") return v1::SPLIT_REPLICATE;
  return absl::InvalidArgumentError(absl::StrCat("split '", split, "' is not column, row, vocab or replicate"));
}

absl::StatusOr<v1::ShardingRule> ParseRule(const nlohmann::json& entry) {
  if (!entry.is_object()) return absl::InvalidArgumentError("is not an object");
  for (const auto& [key, value] : entry.items()) {
    if (key != "pattern" && key != "split" && key != "allow_uneven") {
      return absl::InvalidArgumentError(absl::StrCat("unknown key '", key, "' (pattern, split, allow_uneven)"));
    }
  }
  auto pattern = entry.find("pattern");
  auto split = entry.find("split");
  if (pattern == entry.end() || !pattern->is_string()) return absl::InvalidArgumentError("needs a string 'pattern'");
  if (split == entry.end() || !split->is_string()) return absl::InvalidArgumentError("needs a string 'split'");
  v1::ShardingRule rule;
  rule.set_pattern(pattern->get<std::string>());
  auto kind = ParseSplit(split->get<std::string>());
  if (!kind.ok()) return kind.status();
  rule.set_split(*kind);
  auto uneven = entry.find("allow_uneven");
  if (uneven != entry.end()) {
    if (!uneven->is_boolean()) return absl::InvalidArgumentError("'allow_uneven' is not true or false");
    rule.set_allow_uneven(uneven->get<bool>());
  }
  return rule;
}

}  // namespace

absl::StatusOr<std::vector<v1::ShardingRule>> ParseShardingRules(std::string_view json) {
  nlohmann::json rules = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!rules.is_array()) return absl::InvalidArgumentError("sharding rules: expected a JSON list of rules");
  std::vector<v1::ShardingRule> out;
  for (size_t i = 0; i < rules.size(); ++i) {
    auto rule = ParseRule(rules[i]);
    if (!rule.ok()) return absl::InvalidArgumentError(absl::StrCat("rule ", i, ": ", rule.status().message()));
    out.push_back(std::move(*rule));
  }
  return out;
}

absl::StatusOr<std::vector<v1::ShardingRule>> ReadShardingRules(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot be read"));
  std::stringstream text;
  text << in.rdbuf();
  auto rules = ParseShardingRules(text.str());
  if (!rules.ok()) return absl::Status(rules.status().code(), absl::StrCat(path, ": ", rules.status().message()));
  return rules;
}

}  // namespace weightd::ctl
