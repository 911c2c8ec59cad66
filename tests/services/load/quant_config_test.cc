// ConfigWithQuantization (services/load/quant_config.h): the quantization_config
// of each scheme as the engines read it (vLLM's Fp8Config for per-tensor and
// block, compressed-tensors for per-channel), the input's other fields kept.
#include "services/load/quant_config.h"

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace weightd {
namespace {

using nlohmann::json;

json QuantizationConfig(v1::Scheme scheme, const std::vector<std::string>& ignored = {"lm_head"}) {
  absl::StatusOr<std::string> text = ConfigWithQuantization(R"({"model_type": "llama"})", scheme, ignored);
  EXPECT_TRUE(text.ok()) << text.status();
  const json config = json::parse(*text);
  EXPECT_EQ(config["model_type"], "llama");
  return config["quantization_config"];
}

TEST(QuantConfig, PerTensorIsVllmFp8Dynamic) {
  EXPECT_EQ(QuantizationConfig(v1::SCHEME_PER_TENSOR),
            json::parse(R"({"quant_method": "fp8", "activation_scheme": "dynamic", "ignored_layers": ["lm_head"]})"));
  EXPECT_EQ(QuantizationConfig(v1::SCHEME_UNSPECIFIED), QuantizationConfig(v1::SCHEME_PER_TENSOR));
}

TEST(QuantConfig, BlockAddsTheBlockSizeDeepSeekV3Style) {
  EXPECT_EQ(QuantizationConfig(v1::SCHEME_BLOCK), json::parse(R"({"quant_method": "fp8", "activation_scheme": "dynamic",
      "fmt": "e4m3", "weight_block_size": [128, 128], "ignored_layers": ["lm_head"]})"));
}

TEST(QuantConfig, PerChannelIsCompressedTensorsFp8Dynamic) {
  const json q = QuantizationConfig(v1::SCHEME_PER_CHANNEL, {"lm_head", "model.layers.0.mlp.down_proj"});
  EXPECT_EQ(q["quant_method"], "compressed-tensors");
  EXPECT_EQ(q["format"], "float-quantized");
  EXPECT_EQ(q["quantization_status"], "compressed");
  EXPECT_EQ(q["ignore"], json({"lm_head", "model.layers.0.mlp.down_proj"}));
  ASSERT_EQ(q["config_groups"].size(), 1u);
  const json& group = q["config_groups"]["group_0"];
  EXPECT_EQ(group["targets"], json({"Linear"}));
  EXPECT_EQ(group["format"], "float-quantized");
  const json& w = group["weights"];
  EXPECT_EQ(w["num_bits"], 8);
  EXPECT_EQ(w["type"], "float");
  EXPECT_EQ(w["strategy"], "channel");
  EXPECT_EQ(w["symmetric"], true);
  EXPECT_EQ(w["dynamic"], false);
  const json& a = group["input_activations"];
  EXPECT_EQ(a["num_bits"], 8);
  EXPECT_EQ(a["type"], "float");
  EXPECT_EQ(a["strategy"], "token");
  EXPECT_EQ(a["dynamic"], true);
}

TEST(QuantConfig, NoneKeepsTheInputAndEmptyInputGivesAnObject) {
  absl::StatusOr<std::string> none = ConfigWithQuantization(R"({"a": 1})", v1::SCHEME_NONE, {});
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, R"({"a": 1})");
  absl::StatusOr<std::string> empty = ConfigWithQuantization("", v1::SCHEME_PER_TENSOR, {});
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(json::parse(*empty)["quantization_config"]["ignored_layers"], json::array());
  absl::StatusOr<std::string> bad = ConfigWithQuantization("[1]", v1::SCHEME_PER_TENSOR, {});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace weightd
