// libFuzzer target for ParseWeightMap: any bytes as model.safetensors.index.json.
// It must never crash, must refuse with INVALID_ARGUMENT only, and whatever it
// accepts must name only plain .safetensors files in the checkpoint's directory.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "services/sources/weight_map.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto map = weightd::ParseWeightMap(text);
  if (!map.ok()) {
    if (map.status().code() != absl::StatusCode::kInvalidArgument) {
      std::fprintf(stderr, "unexpected status: %s\n", map.status().ToString().c_str());
      std::abort();
    }
    return 0;
  }
  if (map->empty()) std::abort();
  for (const auto& [tensor, file] : *map) {
    if (!weightd::IsPlainFileName(file) || !absl::EndsWith(file, ".safetensors")) {
      std::fprintf(stderr, "accepted a file name that leaves the directory: %s\n", file.c_str());
      std::abort();
    }
  }
  return 0;
}
