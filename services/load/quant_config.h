// The `quantization_config` an FP8 checkpoint's config.json carries, so engines
// that read weightd's manifest or export see what they expect. Thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "weightd/v1/loader.pb.h"

namespace weightd {

// `config_json` (may be empty) with `quantization_config` set for the scheme;
// unchanged for SCHEME_NONE. INVALID_ARGUMENT if it is not a JSON object.
absl::StatusOr<std::string> ConfigWithQuantization(std::string_view config_json,
                                                   const v1::Quantization& quantization);

}  // namespace weightd
