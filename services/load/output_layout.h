// The one answer to "what does source tensor X become": stored unchanged, or
// quantized to F8_E4M3 under a scheme plus a scale tensor named, shaped and typed
// as FP8 checkpoints carry it (per-tensor `X.weight_scale` F32 [], per-channel
// `X.weight_scale` F32 [rows, 1], block `X.weight_scale_inv` F32
// [ceil(rows/128), ceil(cols/128)]). The daemon's planner, `weightctl quantize`
// and `weightctl verify` all ask it, so their outputs cannot drift apart.
// Immutable after Create, so thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/dtype.h"
#include "kernels/quantize.h"
#include "services/load/tensor_selection.h"
#include "weightd/v1/loader.pb.h"

namespace weightd {

struct OutputSpec {
  std::string name;
  kernels::DType dtype = kernels::DType::kF32;
  std::vector<int64_t> shape;
  uint64_t size = 0;  // bytes
};

struct TensorOutputs {
  bool quantized = false;
  OutputSpec data;  // the tensor itself: F8_E4M3 when quantized, else as it came
  // Only when quantized:
  kernels::Scheme scheme = kernels::Scheme::kPerTensor;
  kernels::Tiling tiling;
  OutputSpec scale;  // F32, one value per tile, row-major over the tile grid
};

// SCHEME_UNSPECIFIED is per-tensor; nullopt for SCHEME_NONE and values outside the enum.
std::optional<kernels::Scheme> KernelScheme(v1::Scheme scheme);

class OutputLayout {
 public:
  // INVALID_ARGUMENT for a scheme outside the enum or a malformed ignore pattern.
  static absl::StatusOr<OutputLayout> Create(v1::Scheme scheme, const std::vector<std::string>& ignore);

  TensorOutputs For(const std::string& name, kernels::DType dtype, const std::vector<int64_t>& shape) const;
  // The outputs of a tensor that several source tensors fill (layout vllm's
  // qkv_proj, gate_up_proj), quantized as its parts are: named, shaped and typed
  // as For names a quantized or a stored tensor.
  TensorOutputs Fused(const std::string& name, bool quantized, kernels::DType dtype,
                      const std::vector<int64_t>& shape) const;

  // For the ignore lists of quantization_config: the module name ("lm_head" for
  // "lm_head.weight") of a 2-D floating-point `.weight` that this layout stores
  // unquantized; nullopt for anything else, and for SCHEME_NONE.
  std::optional<std::string> IgnoredModule(const std::string& name, kernels::DType dtype,
                                           const std::vector<int64_t>& shape) const;

  bool quantizes() const { return scheme_.has_value(); }

 private:
  OutputLayout(std::optional<kernels::Scheme> scheme, TensorSelection selection)
      : scheme_(scheme), selection_(std::move(selection)) {}
  bool Quantizes(const std::string& name, kernels::DType dtype, const std::vector<int64_t>& shape) const;
  TensorOutputs Outputs(const std::string& name, bool quantized, kernels::DType dtype,
                        const std::vector<int64_t>& shape) const;

  std::optional<kernels::Scheme> scheme_;
  TensorSelection selection_;
};

}  // namespace weightd
