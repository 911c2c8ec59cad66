// Which way each checkpoint tensor is cut under tensor parallelism, decided by
// its name: a load's own rules (placement.sharding_rules) first, in order, then
// the built-in rules for Llama, Qwen, Mistral, Mixtral and DeepSeek naming; a
// tensor no rule matches is replicated. Immutable after Create, so thread-safe.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "google/protobuf/repeated_field.h"
#include "services/load/name_pattern.h"
#include "weightd/v1/loader.pb.h"

namespace weightd {

enum class SplitKind { kColumn, kRow, kVocab, kReplicate };

struct SplitRule {
  SplitKind kind = SplitKind::kReplicate;
  bool allow_uneven = false;
};

const char* SplitKindName(SplitKind kind);

// The built-in rules, by the module name (the component before `.weight` or `.bias`):
//   column: q_proj, k_proj, v_proj, q_b_proj, kv_b_proj, gate_proj, up_proj (weight
//           and bias), and experts.N.w1 / w3 (Mixtral);
//   row:    o_proj, down_proj and experts.N.w2 weights (their biases stay replicated);
//   vocab:  embed_tokens and lm_head weights;
//   everything else, among them norms, router gates (mlp.gate, block_sparse_moe.gate,
//   shared_expert_gate) and DeepSeek's q_a_proj / kv_a_proj_with_mqa: replicated.
SplitRule BuiltInSplit(const std::string& name);

class ShardingRules {
 public:
  // INVALID_ARGUMENT naming the rule for an empty, malformed or too long pattern
  // (NamePattern: RE2 syntax) or a split outside the enum (or SPLIT_UNSPECIFIED).
  static absl::StatusOr<ShardingRules> Create(const google::protobuf::RepeatedPtrField<v1::ShardingRule>& rules);

  SplitRule For(const std::string& name) const;

 private:
  struct Compiled {
    NamePattern pattern;
    SplitRule rule;
  };
  std::vector<Compiled> rules_;
};

}  // namespace weightd
