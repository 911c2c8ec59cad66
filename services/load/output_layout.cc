#include "services/load/output_layout.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace weightd {
namespace {

uint64_t Elements(const std::vector<int64_t>& shape) {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

}  // namespace

std::optional<kernels::Scheme> KernelScheme(v1::Scheme scheme) {
  switch (scheme) {
    case v1::SCHEME_UNSPECIFIED:
    case v1::SCHEME_PER_TENSOR: return kernels::Scheme::kPerTensor;
    case v1::SCHEME_PER_CHANNEL: return kernels::Scheme::kPerChannel;
    case v1::SCHEME_BLOCK: return kernels::Scheme::kBlock;
    default: return std::nullopt;
  }
}

absl::StatusOr<OutputLayout> OutputLayout::Create(v1::Scheme scheme, const std::vector<std::string>& ignore) {
  if (!v1::Scheme_IsValid(scheme)) {
    return absl::InvalidArgumentError(absl::StrCat("quantization.scheme ", static_cast<int>(scheme), " is unknown"));
  }
  std::optional<kernels::Scheme> kernel_scheme = KernelScheme(scheme);
  WEIGHTD_ASSIGN_OR_RETURN(TensorSelection selection, TensorSelection::Create(kernel_scheme.has_value(), ignore));
  return OutputLayout(kernel_scheme, std::move(selection));
}

TensorOutputs OutputLayout::For(const std::string& name, kernels::DType dtype,
                                const std::vector<int64_t>& shape) const {
  return Outputs(name, Quantizes(name, dtype, shape), dtype, shape);
}

TensorOutputs OutputLayout::Fused(const std::string& name, bool quantized, kernels::DType dtype,
                                  const std::vector<int64_t>& shape) const {
  return Outputs(name, quantized && scheme_.has_value() && shape.size() == 2 && Elements(shape) > 0, dtype, shape);
}

TensorOutputs OutputLayout::Outputs(const std::string& name, bool quantized, kernels::DType dtype,
                                    const std::vector<int64_t>& shape) const {
  TensorOutputs out;
  const uint64_t elements = Elements(shape);
  if (!quantized) {
    out.data = OutputSpec{name, dtype, shape, elements * kernels::DTypeSize(dtype)};
    return out;
  }
  out.quantized = true;
  out.scheme = *scheme_;
  out.data = OutputSpec{name, kernels::DType::kF8E4M3, shape, elements};
  out.tiling = kernels::TilingFor(*scheme_, static_cast<size_t>(shape[0]), static_cast<size_t>(shape[1]));
  std::vector<int64_t> scale_shape;
  std::string scale_name = name + "_scale";
  switch (*scheme_) {
    case kernels::Scheme::kPerTensor: break;  // a scalar
    case kernels::Scheme::kPerChannel: scale_shape = {shape[0], 1}; break;
    case kernels::Scheme::kBlock:
      scale_name += "_inv";  // DeepSeek-V3's name; the value is the dequantization scale all the same
      scale_shape = {static_cast<int64_t>(out.tiling.grid_rows()), static_cast<int64_t>(out.tiling.grid_cols())};
      break;
  }
  out.scale = OutputSpec{std::move(scale_name), kernels::DType::kF32, std::move(scale_shape),
                         out.tiling.num_tiles() * sizeof(float)};
  return out;
}

// A tensor without elements is stored as it came: its scale would have no tile.
bool OutputLayout::Quantizes(const std::string& name, kernels::DType dtype, const std::vector<int64_t>& shape) const {
  return scheme_ && selection_.ShouldQuantize(name, dtype, shape) && Elements(shape) > 0;
}

std::optional<std::string> OutputLayout::IgnoredModule(const std::string& name, kernels::DType dtype,
                                                       const std::vector<int64_t>& shape) const {
  if (!scheme_ || shape.size() != 2 || !kernels::IsQuantizable(dtype) || !absl::EndsWith(name, ".weight")) {
    return std::nullopt;
  }
  if (Quantizes(name, dtype, shape)) return std::nullopt;
  return name.substr(0, name.size() - 7);
}

}  // namespace weightd
