// Layout vllm's rules (engine_layout.h), the plan they give (planner.h), and the
// gate that holds the parts of a fused per-tensor output (fused_scale_gate.h).
#include "services/load/engine_layout.h"

#include <atomic>

#include "gtest/gtest.h"
#include "services/load/fused_scale_gate.h"
#include "services/load/planner.h"

namespace weightd {
namespace {

TEST(VllmFusedPartTest, NamesTheFusedParameterAndThePartsPosition) {
  auto q = VllmFusedPart("model.layers.3.self_attn.q_proj.weight");
  ASSERT_TRUE(q);
  EXPECT_EQ(q->fused, "model.layers.3.self_attn.qkv_proj.weight");
  EXPECT_EQ(q->part, 0u);
  EXPECT_EQ(q->parts, 3u);
  auto v = VllmFusedPart("model.layers.3.self_attn.v_proj.bias");
  ASSERT_TRUE(v);
  EXPECT_EQ(v->fused, "model.layers.3.self_attn.qkv_proj.bias");
  EXPECT_EQ(v->part, 2u);
  auto up = VllmFusedPart("model.layers.0.mlp.up_proj.weight");
  ASSERT_TRUE(up);
  EXPECT_EQ(up->fused, "model.layers.0.mlp.gate_up_proj.weight");
  EXPECT_EQ(up->part, 1u);
  EXPECT_EQ(up->parts, 2u);
  EXPECT_EQ(VllmPartName("model.layers.0.mlp.up_proj.weight", *up, 0), "model.layers.0.mlp.gate_proj.weight");
  for (const char* other : {"model.layers.0.self_attn.o_proj.weight", "model.layers.0.self_attn.q_proj.weight_scale",
                            "model.layers.0.self_attn.q_a_proj.weight", "lm_head.weight",
                            "model.layers.0.mlp.experts.0.gate_proj.weight_scale"}) {
    EXPECT_FALSE(VllmFusedPart(other)) << other;
  }
}

TEST(VllmVocabSplitTest, PadsToSixtyFourAndSplitsThePaddedRows) {
  auto one = VllmVocabSplit("lm_head.weight", {1000, 8}, 1);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->begin, std::vector<int64_t>({0}));
  EXPECT_EQ(one->length, std::vector<int64_t>({1000}));
  EXPECT_EQ(VllmPaddedRowsPerRank(1000, 1), 1024);
  auto two = VllmVocabSplit("lm_head.weight", {1000, 8}, 2);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(two->begin, std::vector<int64_t>({0, 512}));
  EXPECT_EQ(two->length, std::vector<int64_t>({512, 488}));
  EXPECT_EQ(VllmPaddedRowsPerRank(1000, 2), 512);
  auto bad = VllmVocabSplit("lm_head.weight", {1000, 8}, 3);
  EXPECT_EQ(bad.status().message(),
            "tensor 'lm_head.weight' [1000, 8]: layout vllm pads dim 0 to 1024 rows, which tp_size 3 does not divide");
  auto empty = VllmVocabSplit("lm_head.weight", {10, 8}, 2);
  EXPECT_EQ(empty.status().message(),
            "tensor 'lm_head.weight' [10, 8]: layout vllm leaves rank 1 of tp_size 2 only padding rows");
}

safetensors::TensorHeader Header(std::string name, std::vector<int64_t> shape, uint64_t& at) {
  safetensors::TensorHeader t{std::move(name), kernels::DType::kBF16, std::move(shape), at, at};
  t.end = t.begin + t.num_elements() * 2;
  at = t.end;
  return t;
}

TEST(VllmPlanTest, PartsWriteTheirRowsOfOneFusedOutputWithOneScale) {
  uint64_t at = 0;
  ShardInput shard{"s.safetensors", {}};
  // Out of order on purpose: v before q.
  shard.header.tensors.push_back(Header("l.v_proj.weight", {64, 32}, at));
  shard.header.tensors.push_back(Header("l.q_proj.weight", {128, 32}, at));
  shard.header.tensors.push_back(Header("l.k_proj.weight", {64, 32}, at));
  shard.header.tensors.push_back(Header("embed_tokens.weight", {100, 32}, at));
  PlanOptions options;
  options.devices = {0, 1};
  options.device_granularity = {1, 1};
  options.layout = v1::LAYOUT_VLLM;
  options.heads = {4, 2};
  auto plan = PlanLoad({shard}, options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->fused_scales.size(), 1u);
  EXPECT_EQ(plan->fused_scales[0].name, "l.qkv_proj.weight");
  EXPECT_EQ(plan->fused_scales[0].parts, 3u);
  const std::vector<TensorTask>& tasks = plan->tasks[0];
  const RankPlan& rank1 = plan->ranks[1];
  const OutputTensor& qkv = rank1.tensors[tasks[0].parts[1].output];
  EXPECT_EQ(qkv.name, "l.qkv_proj.weight");
  EXPECT_EQ(qkv.shape, std::vector<int64_t>({128, 32}));  // 64 of q, 32 of k, 32 of v
  EXPECT_EQ(qkv.slice_dim, -1);
  // Rank 1's rows: q at 0, k at 64, v at 96 (FP8: one byte per element).
  EXPECT_EQ(tasks[1].parts[1].output_offset, 0u);
  EXPECT_EQ(tasks[2].parts[1].output_offset, 64u * 32);
  EXPECT_EQ(tasks[0].parts[1].output_offset, 96u * 32);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(tasks[i].fused_scale, 0);
    EXPECT_EQ(tasks[i].parts[1].output, tasks[0].parts[1].output);
    EXPECT_EQ(tasks[i].parts[1].scale, tasks[0].parts[1].scale);
    EXPECT_EQ(tasks[i].parts[1].scale_offset, 0u);
  }
  EXPECT_EQ(rank1.tensors[tasks[0].parts[1].scale].name, "l.qkv_proj.weight_scale");
  // embed_tokens: 100 rows padded to 128, 64 per rank; rank 1 holds rows 64..99 and 28 zero rows.
  const RankPart& embed = tasks[3].parts[1];
  EXPECT_EQ(rank1.tensors[embed.output].shape, std::vector<int64_t>({64, 32}));
  EXPECT_EQ(tasks[3].split.begin, std::vector<int64_t>({0, 64}));
  EXPECT_EQ(embed.padding_offset, 36u * 32 * 2);
  EXPECT_EQ(embed.padding_bytes, 28u * 32 * 2);
  EXPECT_EQ(tasks[3].parts[0].padding_bytes, 0u);
}

// Declared sizes are untrusted: two shards of 2^55 + 2^55 bytes would wrap nothing yet,
// but a third passes 2^56 and is refused before any sum can wrap.
TEST(PlanLimitsTest, DeclaredSizesThatWouldWrapTheSumsAreInvalidArgument) {
  std::vector<ShardInput> shards;
  for (int s = 0; s < 3; ++s) {
    ShardInput shard{"s" + std::to_string(s), {}};
    safetensors::TensorHeader t{"t" + std::to_string(s), kernels::DType::kBF16, {int64_t{1} << 54}, 0, uint64_t{1} << 55};
    shard.header.tensors.push_back(t);
    shards.push_back(shard);
  }
  PlanOptions options;
  options.devices = {0};
  options.device_granularity = {1};
  auto plan = PlanLoad(shards, options);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(plan.status().message(), "tensor 't2' in shard 's2' (36028797018963968 bytes) takes the checkpoint past "
                                     "72057594037927936 bytes, more than any device holds");
  shards[0].header.tensors[0].end = ~uint64_t{0};  // one tensor alone
  EXPECT_EQ(PlanLoad(shards, options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(FusedScaleGateTest, ReleasesThePartsOnceTheLastArrivesWithTheLargestAmax) {
  LoadPlan plan;
  plan.fused_scales.push_back({"x.qkv_proj.weight", 3});
  FusedScaleGate gate(plan);
  std::atomic<int> released{0};
  auto part = [&](float a0, float a1) {
    return FusedScaleGate::Part{nullptr, nullptr, GatherBuffer::CopyOf(std::string(16, 'x')), {a0, a1}, [&] { ++released; }};
  };
  EXPECT_FALSE(gate.Add(0, part(1.0f, 5.0f)));
  EXPECT_FALSE(gate.Add(0, part(3.0f, 2.0f)));
  auto ready = gate.Add(0, part(2.0f, 4.0f));
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->parts.size(), 3u);
  EXPECT_EQ(ready->amax, std::vector<float>({3.0f, 5.0f}));
  EXPECT_EQ(released, 0);  // the caller places the parts, then releases them
}

TEST(FusedScaleGateTest, ClearFreesWhatIsHeldAndWhatComesLater) {
  LoadPlan plan;
  plan.fused_scales.push_back({"x.gate_up_proj.weight", 2});
  FusedScaleGate gate(plan);
  std::atomic<int> released{0};
  EXPECT_FALSE(gate.Add(0, {nullptr, nullptr, GatherBuffer::CopyOf("abc"), {1.0f}, [&] { ++released; }}));
  gate.Clear();
  EXPECT_EQ(released, 1);
  EXPECT_FALSE(gate.Add(0, {nullptr, nullptr, GatherBuffer::CopyOf("def"), {1.0f}, [&] { ++released; }}));
  EXPECT_EQ(released, 2);
}

}  // namespace
}  // namespace weightd
