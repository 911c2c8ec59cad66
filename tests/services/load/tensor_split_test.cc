// Slices of tensors across tensor-parallel ranks: shapes, uneven and misaligned
// splits (with their exact messages), grouped-query attention, and the byte
// geometry of a slice.
#include "services/load/tensor_split.h"

#include <numeric>

#include "gtest/gtest.h"

namespace weightd {
namespace {

constexpr SplitRule kColumn{SplitKind::kColumn, false};
constexpr SplitRule kRow{SplitKind::kRow, false};
constexpr SplitRule kVocab{SplitKind::kVocab, false};

struct Parts {
  int dim;
  std::vector<int64_t> begin, length;
};

Parts Of(const TensorSplit& s) { return {s.dim, s.begin, s.length}; }

void ExpectParts(const absl::StatusOr<TensorSplit>& split, int dim, std::vector<int64_t> begin,
                 std::vector<int64_t> length) {
  ASSERT_TRUE(split.ok()) << split.status();
  EXPECT_EQ(split->dim, dim);
  EXPECT_EQ(split->begin, begin);
  EXPECT_EQ(split->length, length);
}

TEST(SplitTensor, ColumnRowAndVocabCutTheirDimensionEvenly) {
  ExpectParts(SplitTensor("m.q_proj.weight", {1024, 256}, kColumn, 4, {}, 1), 0, {0, 256, 512, 768},
              {256, 256, 256, 256});
  ExpectParts(SplitTensor("m.o_proj.weight", {256, 1024}, kRow, 2, {}, 1), 1, {0, 512}, {512, 512});
  ExpectParts(SplitTensor("model.embed_tokens.weight", {512, 64}, kVocab, 8, {}, 1), 0,
              {0, 64, 128, 192, 256, 320, 384, 448}, std::vector<int64_t>(8, 64));
  auto whole = SplitTensor("m.q_proj.weight", {6, 4}, kColumn, 1, {}, 1);
  ExpectParts(whole, 0, {0}, {6});
  EXPECT_EQ(whole->SliceShape({6, 4}, 0), (std::vector<int64_t>{6, 4}));
}

TEST(SplitTensor, ReplicatedAndOneDimensionalRowTensorsAreWhole) {
  auto norm = SplitTensor("m.norm.weight", {256}, {SplitKind::kReplicate, false}, 8, {}, 1);
  ASSERT_TRUE(norm.ok());
  EXPECT_TRUE(norm->replicated());
  auto bias = SplitTensor("m.o_proj.bias", {256}, kRow, 8, {}, 1);
  ASSERT_TRUE(bias.ok());
  EXPECT_TRUE(bias->replicated());
  auto column_bias = SplitTensor("m.q_proj.bias", {256}, kColumn, 8, {}, 1);
  ExpectParts(column_bias, 0, {0, 32, 64, 96, 128, 160, 192, 224}, std::vector<int64_t>(8, 32));
  auto scalar = SplitTensor("m.q_proj.weight", {}, kColumn, 8, {}, 1);
  ASSERT_TRUE(scalar.ok());
  EXPECT_TRUE(scalar->replicated());
}

TEST(SplitTensor, UnevenSplitIsInvalidArgumentNamingTensorShapeAndDim) {
  auto split = SplitTensor("model.layers.0.mlp.gate_proj.weight", {690, 256}, kColumn, 8, {}, 1);
  EXPECT_EQ(split.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(split.status().message(),
            "tensor 'model.layers.0.mlp.gate_proj.weight' [690, 256]: dim 0 (690) is not divisible by tp_size 8");
  auto row = SplitTensor("model.layers.0.mlp.down_proj.weight", {256, 690}, kRow, 8, {}, 1);
  EXPECT_EQ(row.status().message(),
            "tensor 'model.layers.0.mlp.down_proj.weight' [256, 690]: dim 1 (690) is not divisible by tp_size 8");
}

TEST(SplitTensor, AllowUnevenCutsCeilSizedParts) {
  ExpectParts(SplitTensor("lm_head.weight", {10, 4}, {SplitKind::kVocab, true}, 4, {}, 1), 0, {0, 3, 6, 9},
              {3, 3, 3, 1});
  auto empty = SplitTensor("lm_head.weight", {5, 4}, {SplitKind::kVocab, true}, 4, {}, 1);
  EXPECT_EQ(empty.status().message(), "tensor 'lm_head.weight' [5, 4]: dim 0 (5) leaves rank 3 of tp_size 4 empty");
  // Under the block scheme the parts are rounded up to 128.
  ExpectParts(SplitTensor("m.up_proj.weight", {300, 128}, {SplitKind::kColumn, true}, 2, {}, 128), 0, {0, 256},
              {256, 44});
}

TEST(SplitTensor, BlockSplitPointsMustBeMultiplesOf128) {
  auto split = SplitTensor("model.layers.0.mlp.gate_proj.weight", {688, 256}, kColumn, 2, {}, 128);
  EXPECT_EQ(split.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(split.status().message(),
            "tensor 'model.layers.0.mlp.gate_proj.weight' [688, 256]: the block scheme needs split points on "
            "multiples of 128, but dim 0 (688) splits at 344 for tp_size 2");
  ExpectParts(SplitTensor("m.gate_proj.weight", {1024, 256}, kColumn, 8, {}, 128), 0,
              {0, 128, 256, 384, 512, 640, 768, 896}, std::vector<int64_t>(8, 128));
}

TEST(SplitTensor, KeyValueHeadsFewerThanRanksAreReplicatedAcrossTheRanksSharingThem) {
  const AttentionHeads heads{8, 2};  // head size 32 in a [64, 256] k_proj
  ExpectParts(SplitTensor("model.layers.0.self_attn.k_proj.weight", {64, 256}, kColumn, 8, heads, 1), 0,
              {0, 0, 0, 0, 32, 32, 32, 32}, std::vector<int64_t>(8, 32));
  ExpectParts(SplitTensor("model.layers.0.self_attn.v_proj.bias", {64}, kColumn, 4, heads, 1), 0, {0, 0, 32, 32},
              {32, 32, 32, 32});
  // As many heads as ranks or more: a plain split on head boundaries.
  ExpectParts(SplitTensor("model.layers.0.self_attn.k_proj.weight", {64, 256}, kColumn, 2, heads, 1), 0, {0, 32},
              {32, 32});
  // The query projection is split by its own heads.
  ExpectParts(SplitTensor("model.layers.0.self_attn.q_proj.weight", {256, 256}, kColumn, 8, heads, 1), 0,
              {0, 32, 64, 96, 128, 160, 192, 224}, std::vector<int64_t>(8, 32));
}

TEST(SplitTensor, HeadsThatDoNotFitTheRanksAreInvalidArgument) {
  auto kv = SplitTensor("m.k_proj.weight", {96, 256}, kColumn, 8, {12, 3}, 1);
  EXPECT_EQ(kv.status().message(),
            "tensor 'm.k_proj.weight' [96, 256]: tp_size 8 is not a multiple of num_key_value_heads 3 (ranks sharing "
            "a key/value head must be equally many)");
  auto kv_more = SplitTensor("m.k_proj.weight", {192, 256}, kColumn, 4, {12, 6}, 1);
  EXPECT_EQ(kv_more.status().message(),
            "tensor 'm.k_proj.weight' [192, 256]: num_key_value_heads 6 is not divisible by tp_size 4");
  auto q = SplitTensor("m.q_proj.weight", {384, 256}, kColumn, 8, {12, 4}, 1);
  EXPECT_EQ(q.status().message(), "tensor 'm.q_proj.weight' [384, 256]: num_attention_heads 12 is not divisible by tp_size 8");
  auto rows = SplitTensor("m.k_proj.weight", {100, 256}, kColumn, 8, {8, 8}, 1);
  EXPECT_EQ(rows.status().message(),
            "tensor 'm.k_proj.weight' [100, 256]: dim 0 (100) is not a multiple of num_key_value_heads 8");
  auto block = SplitTensor("m.k_proj.weight", {64, 256}, kColumn, 8, {8, 2}, 128);
  EXPECT_EQ(block.status().message(),
            "tensor 'm.k_proj.weight' [64, 256]: the block scheme needs split points on multiples of 128, but dim 0 "
            "(64) splits at 32 for tp_size 8");
}

TEST(AttentionHeadsFromConfig, ReadsHeadsAndDefaultsKeyValueHeadsToThem) {
  auto gqa = AttentionHeadsFromConfig(R"({"num_attention_heads": 32, "num_key_value_heads": 8})");
  ASSERT_TRUE(gqa.ok());
  EXPECT_EQ(gqa->heads, 32);
  EXPECT_EQ(gqa->kv_heads, 8);
  auto mha = AttentionHeadsFromConfig(R"({"num_attention_heads": 16})");
  EXPECT_EQ(mha->kv_heads, 16);
  auto none = AttentionHeadsFromConfig("");
  EXPECT_EQ(none->heads, 0);
  EXPECT_EQ(none->kv_heads, 0);
  EXPECT_EQ(AttentionHeadsFromConfig("[1]").status().message(), "config.json is not a JSON object");
  EXPECT_EQ(AttentionHeadsFromConfig(R"({"num_key_value_heads": 0})").status().message(),
            "config.json: num_key_value_heads is 0, not a positive integer");
}

TEST(SliceBytes, RowSplitSegmentsAndGather) {
  // [3, 4] of one-byte elements, columns [2, 4) of rank 1.
  auto split = SplitTensor("m.o_proj.weight", {3, 4}, kRow, 2, {}, 1);
  ASSERT_TRUE(split.ok());
  SliceBytes slice = SliceBytesOf(*split, 1, {3, 4}, 1);
  EXPECT_EQ(slice.first, 2u);
  EXPECT_EQ(slice.segments, 3u);
  EXPECT_EQ(slice.segment_bytes, 2u);
  EXPECT_EQ(slice.stride, 4u);
  std::vector<char> tensor(12);
  std::iota(tensor.begin(), tensor.end(), 0);
  std::vector<char> out(slice.size());
  GatherSlice(slice, tensor.data(), out.data());
  EXPECT_EQ(out, (std::vector<char>{2, 3, 6, 7, 10, 11}));
  // A column split of 2-byte elements is one range.
  auto column = SplitTensor("m.q_proj.weight", {4, 3}, kColumn, 2, {}, 1);
  SliceBytes rows = SliceBytesOf(*column, 1, {4, 3}, 2);
  EXPECT_TRUE(rows.contiguous());
  EXPECT_EQ(rows.first, 12u);
  EXPECT_EQ(rows.size(), 12u);
}

}  // namespace
}  // namespace weightd
