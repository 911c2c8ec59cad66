// weightctl verify: checks an export (or any FP8 checkpoint weightd wrote) byte
// for byte against the CPU reference applied to the original checkpoint.
#include <cstdio>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "client/weightctl/cli.h"
#include "client/weightctl/mapped_checkpoint.h"
#include "kernels/quantize.h"
#include "services/load/tensor_selection.h"

namespace weightd::ctl {
namespace {

absl::Status ExpectBytes(const std::string& name, const MappedTensor& actual, kernels::DType dtype,
                         const std::vector<int64_t>& shape, const uint8_t* expected, size_t size) {
  if (actual.header.dtype != dtype || actual.header.shape != shape || actual.header.size() != size) {
    return absl::FailedPreconditionError(absl::StrCat(name, ": export has ", kernels::DTypeName(actual.header.dtype),
                                                      " of ", actual.header.size(), " bytes, expected ",
                                                      kernels::DTypeName(dtype), " of ", size, " bytes"));
  }
  for (size_t i = 0; i < size; ++i) {
    if (actual.bytes[i] != expected[i]) {
      return absl::FailedPreconditionError(absl::StrFormat("%s: byte %zu is 0x%02x, expected 0x%02x", name, i,
                                                           actual.bytes[i], expected[i]));
    }
  }
  return absl::OkStatus();
}

struct Counts {
  size_t quantized = 0, unchanged = 0;
};

absl::StatusOr<Counts> Verify(const CliOptions& options, const MappedCheckpoint& source,
                              const MappedCheckpoint& exported) {
  const bool quantize = options.scheme != "none";
  if (quantize && options.scheme != "per-tensor") {
    return absl::UnimplementedError(absl::StrCat("verify of --scheme=", options.scheme));
  }
  kernels::NonFinitePolicy policy =
      options.nonfinite == "saturate" ? kernels::NonFinitePolicy::kSaturate : kernels::NonFinitePolicy::kFail;
  WEIGHTD_ASSIGN_OR_RETURN(TensorSelection selection, TensorSelection::Create(quantize, options.ignore));
  Counts counts;
  size_t expected_tensors = 0;
  for (const auto& [name, tensor] : source.tensors()) {
    auto found = exported.tensors().find(name);
    if (found == exported.tensors().end()) return absl::NotFoundError(absl::StrCat(name, ": missing from the export"));
    const safetensors::TensorHeader& h = tensor.header;
    ++expected_tensors;
    if (!selection.ShouldQuantize(name, h.dtype, h.shape)) {
      WEIGHTD_RETURN_IF_ERROR(ExpectBytes(name, found->second, h.dtype, h.shape, tensor.bytes, h.size()));
      ++counts.unchanged;
      continue;
    }
    size_t n = h.num_elements();
    WEIGHTD_ASSIGN_OR_RETURN(float amax, kernels::AbsMax(h.dtype, tensor.bytes, n, policy));
    float scale = kernels::ScaleFromAmax(amax);
    std::vector<uint8_t> fp8(n);
    kernels::QuantizeE4M3(h.dtype, tensor.bytes, n, scale, policy, fp8.data());
    WEIGHTD_RETURN_IF_ERROR(ExpectBytes(name, found->second, kernels::DType::kF8E4M3, h.shape, fp8.data(), n));
    std::string scale_name = name + "_scale";
    auto scale_tensor = exported.tensors().find(scale_name);
    if (scale_tensor == exported.tensors().end()) {
      return absl::NotFoundError(absl::StrCat(scale_name, ": missing from the export"));
    }
    uint8_t scale_bytes[4];
    std::memcpy(scale_bytes, &scale, 4);
    WEIGHTD_RETURN_IF_ERROR(ExpectBytes(scale_name, scale_tensor->second, kernels::DType::kF32, {}, scale_bytes, 4));
    ++expected_tensors;
    ++counts.quantized;
  }
  if (exported.tensors().size() != expected_tensors) {
    return absl::FailedPreconditionError(absl::StrCat("the export has ", exported.tensors().size(),
                                                      " tensors, expected ", expected_tensors));
  }
  return counts;
}

}  // namespace

int RunVerify(const CliOptions& options, const Args& args) {
  if (args.size() != 2) return Usage("weightctl verify CHECKPOINT EXPORT [--scheme S] [--ignore ...]");
  auto source = MappedCheckpoint::Open(args[0]);
  if (!source.ok()) return ReportError(source.status());
  auto exported = MappedCheckpoint::Open(args[1]);
  if (!exported.ok()) return ReportError(exported.status());
  auto counts = Verify(options, **source, **exported);
  if (!counts.ok()) return ReportError(counts.status());
  std::printf("verified %zu tensors: %zu quantized equal to the CPU reference, %zu unchanged and bit-identical\n",
              counts->quantized + counts->unchanged, counts->quantized, counts->unchanged);
  return 0;
}

}  // namespace weightd::ctl
