#include "services/load/quant_config.h"

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace weightd {

absl::StatusOr<std::string> ConfigWithQuantization(std::string_view config_json,
                                                   const v1::Quantization& quantization) {
  nlohmann::json config = nlohmann::json::object();
  if (!config_json.empty()) {
    config = nlohmann::json::parse(config_json, nullptr, /*allow_exceptions=*/false);
    if (!config.is_object()) {
      return absl::InvalidArgumentError("config.json is not a JSON object");
    }
  }
  switch (quantization.scheme()) {
    case v1::SCHEME_NONE:
      return std::string(config_json);
    case v1::SCHEME_UNSPECIFIED:
    case v1::SCHEME_PER_TENSOR: {
      nlohmann::json q = {{"quant_method", "fp8"}, {"activation_scheme", "dynamic"}};
      if (quantization.ignore_size() > 0) {
        q["ignored_layers"] = nlohmann::json(std::vector<std::string>(
            quantization.ignore().begin(), quantization.ignore().end()));
      }
      config["quantization_config"] = q;
      break;
    }
    default:
      return absl::UnimplementedError(
          absl::StrCat("no quantization_config for ", v1::Scheme_Name(quantization.scheme())));
  }
  return config.dump(2);
}

}  // namespace weightd
