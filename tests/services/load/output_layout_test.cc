// OutputLayout (services/load/output_layout.h) and the TensorSelection behind it:
// which tensors become FP8, and the names, dtypes and shapes of what they become
// under each scheme.
#include "services/load/output_layout.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace weightd {
namespace {

using kernels::DType;

OutputLayout Layout(v1::Scheme scheme, const std::vector<std::string>& ignore = {}) {
  absl::StatusOr<OutputLayout> layout = OutputLayout::Create(scheme, ignore);
  EXPECT_TRUE(layout.ok()) << layout.status();
  return *std::move(layout);
}

bool Quantized(const OutputLayout& layout, const std::string& name, DType dtype = DType::kBF16,
               std::vector<int64_t> shape = {256, 384}) {
  return layout.For(name, dtype, shape).quantized;
}

TEST(OutputLayout, LinearWeightsOnlyByDefault) {
  const OutputLayout layout = Layout(v1::SCHEME_PER_TENSOR);
  EXPECT_TRUE(Quantized(layout, "model.layers.0.self_attn.q_proj.weight"));
  EXPECT_TRUE(Quantized(layout, "model.layers.0.mlp.gate_proj.weight"));
  EXPECT_TRUE(Quantized(layout, "encoder.layer.0.attention.self.query.weight", DType::kF32));
  EXPECT_TRUE(Quantized(layout, "model.layers.0.mlp.down_proj.weight", DType::kF16));
  // Embeddings, lm_head, norms, MoE router gates, biases, non-2-D, empty, non-float, FP8.
  EXPECT_FALSE(Quantized(layout, "model.embed_tokens.weight"));
  EXPECT_FALSE(Quantized(layout, "lm_head.weight"));
  EXPECT_FALSE(Quantized(layout, "model.layers.0.input_layernorm.weight"));
  EXPECT_FALSE(Quantized(layout, "model.layers.3.mlp.gate.weight"));
  EXPECT_FALSE(Quantized(layout, "model.layers.0.self_attn.q_proj.bias"));
  EXPECT_FALSE(Quantized(layout, "model.layers.0.mlp.experts.w", DType::kBF16, {8, 16, 16}));
  EXPECT_FALSE(Quantized(layout, "model.layers.0.self_attn.q_proj.weight", DType::kBF16, {0, 16}));
  EXPECT_FALSE(Quantized(layout, "embeddings.position_ids.weight", DType::kI64, {1, 512}));
  EXPECT_FALSE(Quantized(layout, "model.layers.0.mlp.up_proj.weight", DType::kF8E4M3));
  EXPECT_FALSE(Quantized(layout, "model.layers.0.mlp.up_proj.weight", DType::kF64));
  EXPECT_FALSE(Quantized(Layout(v1::SCHEME_NONE), "model.layers.0.mlp.up_proj.weight"));
}

TEST(OutputLayout, IgnoreListMatchesTensorAndModuleNamesExactlyOrByWholeRegex) {
  const OutputLayout layout =
      Layout(v1::SCHEME_BLOCK, {"model.layers.0.mlp.down_proj", "model.layers.1.mlp.up_proj.weight",
                                R"(re:.*self_attn\.[kv]_proj)"});
  EXPECT_FALSE(Quantized(layout, "model.layers.0.mlp.down_proj.weight"));
  EXPECT_TRUE(Quantized(layout, "model.layers.10.mlp.down_proj.weight")) << "exact, not a prefix";
  EXPECT_FALSE(Quantized(layout, "model.layers.1.mlp.up_proj.weight"));
  EXPECT_FALSE(Quantized(layout, "model.layers.7.self_attn.k_proj.weight"));
  EXPECT_FALSE(Quantized(layout, "model.layers.7.self_attn.v_proj.weight"));
  EXPECT_TRUE(Quantized(layout, "model.layers.7.self_attn.q_proj.weight"));
  EXPECT_TRUE(Quantized(layout, "model.layers.7.self_attn.k_proj_extra.weight")) << "the whole name must match";
  EXPECT_EQ(layout.IgnoredModule("model.layers.0.mlp.down_proj.weight", DType::kBF16, {256, 688}),
            "model.layers.0.mlp.down_proj");
  EXPECT_EQ(layout.IgnoredModule("lm_head.weight", DType::kBF16, {512, 256}), "lm_head");
  EXPECT_EQ(layout.IgnoredModule("model.layers.0.mlp.up_proj.weight", DType::kBF16, {688, 256}), std::nullopt);
  EXPECT_EQ(layout.IgnoredModule("model.norm.weight", DType::kBF16, {256}), std::nullopt);
  EXPECT_EQ(layout.IgnoredModule("embeddings.position_ids", DType::kI64, {1, 512}), std::nullopt);
}

TEST(OutputLayout, MalformedPatternIsInvalidArgumentNamingIt) {
  absl::StatusOr<OutputLayout> layout = OutputLayout::Create(v1::SCHEME_PER_TENSOR, {"re:(open"});
  ASSERT_FALSE(layout.ok());
  EXPECT_EQ(layout.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(layout.status().message().find("re:(open"), absl::string_view::npos);
}

struct Expected {
  v1::Scheme scheme;
  std::string scale_name;
  std::vector<int64_t> scale_shape;
};

TEST(OutputLayout, NamesDtypesAndShapesPerScheme) {
  const std::string name = "model.layers.0.mlp.down_proj.weight";
  for (const Expected& e : {Expected{v1::SCHEME_PER_TENSOR, name + "_scale", {}},
                            Expected{v1::SCHEME_UNSPECIFIED, name + "_scale", {}},
                            Expected{v1::SCHEME_PER_CHANNEL, name + "_scale", {257, 1}},
                            Expected{v1::SCHEME_BLOCK, name + "_scale_inv", {3, 8}}}) {
    const TensorOutputs out = Layout(e.scheme).For(name, DType::kBF16, {257, 1000});
    ASSERT_TRUE(out.quantized);
    EXPECT_EQ(out.data.name, name);
    EXPECT_EQ(out.data.dtype, DType::kF8E4M3);
    EXPECT_EQ(out.data.shape, (std::vector<int64_t>{257, 1000}));
    EXPECT_EQ(out.data.size, 257u * 1000u);
    EXPECT_EQ(out.scale.name, e.scale_name);
    EXPECT_EQ(out.scale.dtype, DType::kF32);
    EXPECT_EQ(out.scale.shape, e.scale_shape);
    EXPECT_EQ(out.scale.size, out.tiling.num_tiles() * 4);
  }
  const TensorOutputs kept = Layout(v1::SCHEME_BLOCK).For("lm_head.weight", DType::kF16, {512, 256});
  EXPECT_FALSE(kept.quantized);
  EXPECT_EQ(kept.data.dtype, DType::kF16);
  EXPECT_EQ(kept.data.size, 512u * 256u * 2u);
}

}  // namespace
}  // namespace weightd
