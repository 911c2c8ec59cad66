#include "services/load/quant_config.h"

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace weightd {
namespace {

using nlohmann::json;

json FloatArgs(const char* strategy, bool dynamic, json observer) {
  return {{"num_bits", 8},          {"type", "float"},         {"strategy", strategy},
          {"symmetric", true},      {"dynamic", dynamic},      {"group_size", nullptr},
          {"block_structure", nullptr}, {"actorder", nullptr}, {"observer", std::move(observer)},
          {"observer_kwargs", json::object()}};
}

// compressed-tensors' FP8_DYNAMIC preset with channel-wise weights.
json CompressedTensorsChannel(const std::vector<std::string>& ignored) {
  json group = {{"targets", {"Linear"}},
                {"weights", FloatArgs("channel", false, "minmax")},
                {"input_activations", FloatArgs("token", true, nullptr)},
                {"output_activations", nullptr},
                {"format", "float-quantized"}};
  return {{"quant_method", "compressed-tensors"},
          {"format", "float-quantized"},
          {"quantization_status", "compressed"},
          {"config_groups", {{"group_0", std::move(group)}}},
          {"ignore", ignored},
          {"kv_cache_scheme", nullptr},
          {"global_compression_ratio", nullptr},
          {"sparsity_config", json::object()}};
}

}  // namespace

absl::StatusOr<std::string> ConfigWithQuantization(std::string_view config_json, v1::Scheme scheme,
                                                   const std::vector<std::string>& ignored_modules) {
  json config = json::object();
  if (!config_json.empty()) {
    config = json::parse(config_json, nullptr, /*allow_exceptions=*/false);
    if (!config.is_object()) {
      return absl::InvalidArgumentError("config.json is not a JSON object");
    }
  }
  switch (scheme) {
    case v1::SCHEME_NONE:
      return std::string(config_json);
    case v1::SCHEME_UNSPECIFIED:
    case v1::SCHEME_PER_TENSOR:
      config["quantization_config"] = {
          {"quant_method", "fp8"}, {"activation_scheme", "dynamic"}, {"ignored_layers", ignored_modules}};
      break;
    case v1::SCHEME_BLOCK:
      config["quantization_config"] = {{"quant_method", "fp8"},
                                       {"activation_scheme", "dynamic"},
                                       {"fmt", "e4m3"},
                                       {"weight_block_size", {128, 128}},
                                       {"ignored_layers", ignored_modules}};
      break;
    case v1::SCHEME_PER_CHANNEL:
      config["quantization_config"] = CompressedTensorsChannel(ignored_modules);
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat("no quantization_config for scheme ", static_cast<int>(scheme)));
  }
  return config.dump(2);
}

}  // namespace weightd
