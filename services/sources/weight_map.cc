#include "services/sources/weight_map.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace weightd {

bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos && name.find('\0') == std::string::npos &&
         name != "." && name != "..";
}

absl::StatusOr<std::map<std::string, std::string>> ParseWeightMap(const std::string& index_json) {
  if (index_json.size() > kMaxIndexBytes) {
    return absl::InvalidArgumentError(absl::StrCat("model.safetensors.index.json is ", index_json.size(),
                                                   " bytes, the limit is ", kMaxIndexBytes));
  }
  nlohmann::json index = nlohmann::json::parse(index_json, nullptr, /*allow_exceptions=*/false);
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
    return absl::InvalidArgumentError(
        "model.safetensors.index.json: expected a JSON object with a \"weight_map\" object");
  }
  std::map<std::string, std::string> map;
  for (const auto& [name, file] : index["weight_map"].items()) {
    if (!file.is_string() || !IsPlainFileName(file.get<std::string>()) ||
        !absl::EndsWith(file.get<std::string>(), ".safetensors")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model.safetensors.index.json: weight_map entry '", name,
          "' must name a .safetensors file in the same directory"));
    }
    map[name] = file.get<std::string>();
  }
  if (map.empty()) return absl::InvalidArgumentError("model.safetensors.index.json: weight_map is empty");
  return map;
}

}  // namespace weightd
