#include "services/load/sharding_rules.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace weightd {
namespace {

absl::StatusOr<SplitKind> KindOf(v1::Split split) {
  switch (split) {
    case v1::SPLIT_COLUMN: return SplitKind::kColumn;
    case v1::SPLIT_ROW: return SplitKind::kRow;
    case v1::SPLIT_VOCAB: return SplitKind::kVocab;
    case v1::SPLIT_REPLICATE: return SplitKind::kReplicate;
    default: return absl::InvalidArgumentError(absl::StrCat("split ", static_cast<int>(split), " is not column, row, vocab or replicate"));
  }
}

bool IsExpertIndex(const std::string& part) {
  return !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

const char* SplitKindName(SplitKind kind) {
  switch (kind) {
    case SplitKind::kColumn: return "column";
    case SplitKind::kRow: return "row";
    case SplitKind::kVocab: return "vocab";
    case SplitKind::kReplicate: return "replicate";
  }
  return "replicate";
}

SplitRule BuiltInSplit(const std::string& name) {
  static const absl::flat_hash_set<std::string> kColumn = {"q_proj",   "k_proj",    "v_proj", "q_b_proj",
                                                           "kv_b_proj", "gate_proj", "up_proj"};
  static const absl::flat_hash_set<std::string> kRow = {"o_proj", "down_proj"};
  const std::vector<std::string> parts = absl::StrSplit(name, '.');
  if (parts.size() < 2) return {};
  const std::string& leaf = parts.back();
  const std::string& module = parts[parts.size() - 2];
  const bool weight = leaf == "weight";
  if (!weight && leaf != "bias") return {};
  const bool expert = parts.size() >= 4 && IsExpertIndex(parts[parts.size() - 3]) && parts[parts.size() - 4] == "experts";
  if (kColumn.contains(module) || (expert && (module == "w1" || module == "w3"))) return {SplitKind::kColumn, false};
  if (!weight) return {};
  if (kRow.contains(module) || (expert && module == "w2")) return {SplitKind::kRow, false};
  if (module == "embed_tokens" || module == "lm_head") return {SplitKind::kVocab, false};
  return {};
}

absl::StatusOr<ShardingRules> ShardingRules::Create(
    const google::protobuf::RepeatedPtrField<v1::ShardingRule>& rules) {
  ShardingRules out;
  for (int i = 0; i < rules.size(); ++i) {
    const v1::ShardingRule& rule = rules[i];
    const std::string where = absl::StrCat("placement.sharding_rules[", i, "]");
    if (rule.pattern().empty()) return absl::InvalidArgumentError(absl::StrCat(where, ": pattern is empty"));
    auto kind = KindOf(rule.split());
    if (!kind.ok()) return absl::InvalidArgumentError(absl::StrCat(where, ": ", kind.status().message()));
    auto pattern = NamePattern::Compile(rule.pattern(), rule.pattern());
    if (!pattern.ok()) return absl::InvalidArgumentError(absl::StrCat(where, ": ", pattern.status().message()));
    out.rules_.push_back({*std::move(pattern), {*kind, rule.allow_uneven()}});
  }
  return out;
}

SplitRule ShardingRules::For(const std::string& name) const {
  for (const Compiled& c : rules_) {
    if (c.pattern.FullMatch(name)) return c.rule;
  }
  return BuiltInSplit(name);
}

}  // namespace weightd
