// The built-in sharding rules on the naming of Llama, Qwen, Mistral, Mixtral and
// DeepSeek checkpoints, and a load's own rules overriding them.
#include "services/load/sharding_rules.h"

#include "gtest/gtest.h"

namespace weightd {
namespace {

SplitKind Kind(const std::string& name) { return BuiltInSplit(name).kind; }

TEST(BuiltInSplit, LlamaAndMistral) {
  EXPECT_EQ(Kind("model.embed_tokens.weight"), SplitKind::kVocab);
  EXPECT_EQ(Kind("lm_head.weight"), SplitKind::kVocab);
  EXPECT_EQ(Kind("model.layers.0.self_attn.q_proj.weight"), SplitKind::kColumn);
  EXPECT_EQ(Kind("model.layers.0.self_attn.k_proj.weight"), SplitKind::kColumn);
  EXPECT_EQ(Kind("model.layers.0.self_attn.v_proj.weight"), SplitKind::kColumn);
  EXPECT_EQ(Kind("model.layers.0.self_attn.o_proj.weight"), SplitKind::kRow);
  EXPECT_EQ(Kind("model.layers.0.mlp.gate_proj.weight"), SplitKind::kColumn);
  EXPECT_EQ(Kind("model.layers.0.mlp.up_proj.weight"), SplitKind::kColumn);
  EXPECT_EQ(Kind("model.layers.0.mlp.down_proj.weight"), SplitKind::kRow);
  EXPECT_EQ(Kind("model.layers.0.input_layernorm.weight"), SplitKind::kReplicate);
  EXPECT_EQ(Kind("model.layers.0.post_attention_layernorm.weight"), SplitKind::kReplicate);
  EXPECT_EQ(Kind("model.norm.weight"), SplitKind::kReplicate);
}

TEST(BuiltInSplit, QwenBiases) {
  EXPECT_EQ(Kind("model.layers.3.self_attn.q_proj.bias"), SplitKind::kColumn);
  EXPECT_EQ(Kind("model.layers.3.self_attn.k_proj.bias"), SplitKind::kColumn);
  EXPECT_EQ(Kind("model.layers.3.self_attn.v_proj.bias"), SplitKind::kColumn);
  // Row-parallel layers add their bias once, after the all-reduce: every rank holds it whole.
  EXPECT_EQ(Kind("model.layers.3.self_attn.o_proj.bias"), SplitKind::kReplicate);
  EXPECT_EQ(Kind("model.layers.3.mlp.down_proj.bias"), SplitKind::kReplicate);
}

TEST(BuiltInSplit, MoeExpertsAndRouters) {
  EXPECT_EQ(Kind("model.layers.1.block_sparse_moe.experts.7.w1.weight"), SplitKind::kColumn);
  EXPECT_EQ(Kind("model.layers.1.block_sparse_moe.experts.7.w3.weight"), SplitKind::kColumn);
  EXPECT_EQ(Kind("model.layers.1.block_sparse_moe.experts.7.w2.weight"), SplitKind::kRow);
  EXPECT_EQ(Kind("model.layers.1.block_sparse_moe.gate.weight"), SplitKind::kReplicate);
  EXPECT_EQ(Kind("model.layers.5.mlp.experts.255.gate_proj.weight"), SplitKind::kColumn);
  EXPECT_EQ(Kind("model.layers.5.mlp.experts.255.up_proj.weight"), SplitKind::kColumn);
  EXPECT_EQ(Kind("model.layers.5.mlp.experts.255.down_proj.weight"), SplitKind::kRow);
  EXPECT_EQ(Kind("model.layers.5.mlp.shared_experts.gate_proj.weight"), SplitKind::kColumn);
  EXPECT_EQ(Kind("model.layers.5.mlp.shared_experts.down_proj.weight"), SplitKind::kRow);
  EXPECT_EQ(Kind("model.layers.5.mlp.gate.weight"), SplitKind::kReplicate);
  EXPECT_EQ(Kind("model.layers.5.mlp.gate.e_score_correction_bias"), SplitKind::kReplicate);
  EXPECT_EQ(Kind("model.layers.2.mlp.shared_expert_gate.weight"), SplitKind::kReplicate);
  // A w1 outside experts is not Mixtral's.
  EXPECT_EQ(Kind("model.layers.1.w1.weight"), SplitKind::kReplicate);
}

TEST(BuiltInSplit, DeepSeekLatentAttention) {
  EXPECT_EQ(Kind("model.layers.0.self_attn.q_a_proj.weight"), SplitKind::kReplicate);
  EXPECT_EQ(Kind("model.layers.0.self_attn.q_a_layernorm.weight"), SplitKind::kReplicate);
  EXPECT_EQ(Kind("model.layers.0.self_attn.q_b_proj.weight"), SplitKind::kColumn);
  EXPECT_EQ(Kind("model.layers.0.self_attn.kv_a_proj_with_mqa.weight"), SplitKind::kReplicate);
  EXPECT_EQ(Kind("model.layers.0.self_attn.kv_b_proj.weight"), SplitKind::kColumn);
  EXPECT_EQ(Kind("model.layers.0.self_attn.o_proj.weight"), SplitKind::kRow);
}

google::protobuf::RepeatedPtrField<v1::ShardingRule> Rules(
    std::initializer_list<std::tuple<std::string, v1::Split, bool>> rules) {
  google::protobuf::RepeatedPtrField<v1::ShardingRule> out;
  for (const auto& [pattern, split, uneven] : rules) {
    v1::ShardingRule* rule = out.Add();
    rule->set_pattern(pattern);
    rule->set_split(split);
    rule->set_allow_uneven(uneven);
  }
  return out;
}

TEST(ShardingRules, TheFirstMatchingRuleWinsThenTheBuiltInOnes) {
  auto rules = ShardingRules::Create(Rules({{R"(.*\.o_proj\.weight)", v1::SPLIT_REPLICATE, false},
                                            {R"(.*\.o_proj\..*)", v1::SPLIT_COLUMN, false},
                                            {R"(lm_head\.weight)", v1::SPLIT_VOCAB, true}}));
  ASSERT_TRUE(rules.ok()) << rules.status();
  EXPECT_EQ(rules->For("model.layers.0.self_attn.o_proj.weight").kind, SplitKind::kReplicate);
  EXPECT_EQ(rules->For("model.layers.0.self_attn.o_proj.bias").kind, SplitKind::kColumn);
  EXPECT_TRUE(rules->For("lm_head.weight").allow_uneven);
  EXPECT_EQ(rules->For("model.layers.0.mlp.down_proj.weight").kind, SplitKind::kRow);
  EXPECT_FALSE(rules->For("model.layers.0.mlp.down_proj.weight").allow_uneven);
}

TEST(ShardingRules, PatternsMatchTheWholeName) {
  auto rules = ShardingRules::Create(Rules({{"o_proj", v1::SPLIT_COLUMN, false}}));
  ASSERT_TRUE(rules.ok());
  EXPECT_EQ(rules->For("model.layers.0.self_attn.o_proj.weight").kind, SplitKind::kRow);
}

TEST(ShardingRules, BadRulesAreInvalidArgumentNamingTheRule) {
  auto bad_regex = ShardingRules::Create(Rules({{".*", v1::SPLIT_ROW, false}, {"(unclosed", v1::SPLIT_ROW, false}}));
  EXPECT_EQ(bad_regex.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad_regex.status().message().find("placement.sharding_rules[1]: pattern '(unclosed' is not a regular expression"),
            std::string::npos)
      << bad_regex.status();
  auto unspecified = ShardingRules::Create(Rules({{".*", v1::SPLIT_UNSPECIFIED, false}}));
  EXPECT_EQ(unspecified.status().message(),
            "placement.sharding_rules[0]: split 0 is not column, row, vocab or replicate");
  auto empty = ShardingRules::Create(Rules({{"", v1::SPLIT_ROW, false}}));
  EXPECT_EQ(empty.status().message(), "placement.sharding_rules[0]: pattern is empty");
}

}  // namespace
}  // namespace weightd
