// The `quantization_config` an FP8 checkpoint's config.json carries, so that
// engines (vLLM, SGLang, transformers) reading weightd's manifest, export or
// `weightctl quantize` output see what they expect:
//   per-tensor: {"quant_method": "fp8", "activation_scheme": "dynamic", "ignored_layers": [...]}
//   block:      the same plus "fmt": "e4m3", "weight_block_size": [128, 128] (DeepSeek-V3)
//   per-channel: compressed-tensors "float-quantized", one config group targeting
//                Linear: weights 8-bit float, channel strategy, symmetric, static;
//                input activations dynamic per token; "ignore": [...]
// Thread-safe (pure function).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "weightd/v1/loader.pb.h"

namespace weightd {

// `config_json` (may be empty) with `quantization_config` set for `scheme`;
// unchanged for SCHEME_NONE. `ignored_modules` are the modules left unquantized
// (LoadPlan::ignored_modules), listed by name because vLLM's fp8 method matches
// exact names. INVALID_ARGUMENT if `config_json` is not a JSON object.
absl::StatusOr<std::string> ConfigWithQuantization(std::string_view config_json, v1::Scheme scheme,
                                                   const std::vector<std::string>& ignored_modules);

}  // namespace weightd
