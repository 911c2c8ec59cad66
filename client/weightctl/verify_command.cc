// weightctl verify: checks an export or a `weightctl quantize` output (any FP8
// checkpoint weightd wrote) byte for byte against the CPU reference applied to
// the original checkpoint, under any scheme.
#include <cstdio>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "client/weightctl/cli.h"
#include "client/weightctl/mapped_checkpoint.h"
#include "kernels/quantize.h"
#include "services/load/output_layout.h"

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

absl::Status ExpectTensor(const MappedCheckpoint& exported, const OutputSpec& spec, const void* expected) {
  auto found = exported.tensors().find(spec.name);
  if (found == exported.tensors().end()) return absl::NotFoundError(absl::StrCat(spec.name, ": missing from the export"));
  return ExpectBytes(spec.name, found->second, spec.dtype, spec.shape, static_cast<const uint8_t*>(expected),
                     spec.size);
}

// Every output the layout (the daemon's own naming) gives each source tensor, with
// the bytes of the reference kernels (kernels/quantize_ref.cc), and nothing else.
absl::StatusOr<Counts> Verify(const CliOptions& options, const MappedCheckpoint& source,
                              const MappedCheckpoint& exported) {
  WEIGHTD_ASSIGN_OR_RETURN(v1::Scheme scheme, ParseScheme(options.scheme));
  WEIGHTD_ASSIGN_OR_RETURN(v1::NonFinite nonfinite, ParseNonFinite(options.nonfinite));
  const kernels::NonFinitePolicy policy =
      nonfinite == v1::NONFINITE_SATURATE ? kernels::NonFinitePolicy::kSaturate : kernels::NonFinitePolicy::kFail;
  WEIGHTD_ASSIGN_OR_RETURN(OutputLayout layout, OutputLayout::Create(scheme, options.ignore));
  Counts counts;
  size_t expected_tensors = 0;
  std::vector<float> scales;
  std::vector<uint8_t> fp8;
  for (const auto& [name, tensor] : source.tensors()) {
    const safetensors::TensorHeader& h = tensor.header;
    const TensorOutputs out = layout.For(name, h.dtype, h.shape);
    ++expected_tensors;
    if (!out.quantized) {
      WEIGHTD_RETURN_IF_ERROR(ExpectTensor(exported, out.data, tensor.bytes));
      ++counts.unchanged;
      continue;
    }
    scales.resize(out.tiling.num_tiles());
    absl::Status scaled = kernels::TileScales(out.scheme, h.dtype, tensor.bytes, out.tiling, policy, scales.data());
    if (!scaled.ok()) return absl::InvalidArgumentError(absl::StrCat(name, ": ", scaled.message()));
    fp8.resize(out.data.size);
    kernels::QuantizeRows(h.dtype, tensor.bytes, out.tiling, scales.data(), 0, out.tiling.rows, fp8.data());
    WEIGHTD_RETURN_IF_ERROR(ExpectTensor(exported, out.data, fp8.data()));
    WEIGHTD_RETURN_IF_ERROR(ExpectTensor(exported, out.scale, scales.data()));
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
  if (args.size() != 2) return Usage("weightctl verify CHECKPOINT EXPORT [--scheme S] [--ignore ...] [--nonfinite fail|saturate] [--json]");
  auto source = MappedCheckpoint::Open(args[0]);
  if (!source.ok()) return ReportError(source.status());
  auto exported = MappedCheckpoint::Open(args[1]);
  if (!exported.ok()) return ReportError(exported.status());
  auto counts = Verify(options, **source, **exported);
  if (!counts.ok()) return ReportError(counts.status());
  if (options.json) {
    std::printf("{\"verified\": %zu, \"quantized\": %zu, \"unchanged\": %zu}\n",
                counts->quantized + counts->unchanged, counts->quantized, counts->unchanged);
    return 0;
  }
  std::printf("verified %zu tensors: %zu quantized equal to the CPU reference, %zu unchanged and bit-identical\n",
              counts->quantized + counts->unchanged, counts->quantized, counts->unchanged);
  return 0;
}

}  // namespace weightd::ctl
