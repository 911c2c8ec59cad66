#include "client/weightctl/vllm_reference.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "kernels/quantize.h"
#include "services/load/engine_layout.h"

namespace weightd::ctl {
namespace {

std::string SliceOf(const TensorSplit& split, uint32_t rank, const MappedTensor& t) {
  const SliceBytes slice = SliceBytesOf(split, rank, t.header.shape, kernels::DTypeSize(t.header.dtype));
  std::string out(slice.size(), '\0');
  GatherSlice(slice, reinterpret_cast<const char*>(t.bytes), out.data());
  return out;
}

// One scale over every part's rank slice: the largest amax (whole parts under
// scope tensor, the rank's slices under scope shard).
absl::StatusOr<ExpectedOutput> PerTensorFused(const OutputLayout& layout, const ShardingRules& rules,
                                              const RankReferenceOptions& options, const std::string& name,
                                              const std::vector<const MappedTensor*>& parts,
                                              std::vector<float>& scale_out) {
  float amax = 0.0f;
  std::vector<std::string> slices;
  std::vector<int64_t> shape = parts[0]->header.shape;
  shape[0] = 0;
  for (const MappedTensor* t : parts) {
    WEIGHTD_ASSIGN_OR_RETURN(TensorSplit split, SplitTensor(t->header.name, t->header.shape, rules.For(t->header.name),
                                                            options.tp, options.heads, 1));
    slices.push_back(SliceOf(split, options.rank, *t));
    const bool whole = options.scope == v1::SCALE_SCOPE_TENSOR;
    const size_t elements = whole ? static_cast<size_t>(t->header.num_elements())
                                  : slices.back().size() / kernels::DTypeSize(t->header.dtype);
    WEIGHTD_ASSIGN_OR_RETURN(float part_amax, kernels::AbsMax(t->header.dtype, whole ? static_cast<const void*>(t->bytes)
                                                                                     : slices.back().data(),
                                                             elements, options.policy));
    amax = std::max(amax, part_amax);
    shape[0] += split.length[options.rank];
  }
  const float scale = kernels::ScaleFromAmax(amax);
  ExpectedOutput out{layout.Fused(name, true, parts[0]->header.dtype, shape).data, {}};
  for (size_t p = 0; p < parts.size(); ++p) {
    const kernels::DType dtype = parts[p]->header.dtype;
    const size_t rows = slices[p].size() / kernels::DTypeSize(dtype) / static_cast<size_t>(shape[1]);
    const kernels::Tiling tiling = kernels::TilingFor(kernels::Scheme::kPerTensor, rows, static_cast<size_t>(shape[1]));
    std::string fp8(rows * static_cast<size_t>(shape[1]), '\0');
    kernels::QuantizeRows(dtype, slices[p].data(), tiling, &scale, 0, rows, reinterpret_cast<uint8_t*>(fp8.data()));
    out.bytes += fp8;
  }
  scale_out.assign(1, scale);
  return out;
}

absl::StatusOr<std::vector<ExpectedOutput>> Fused(const OutputLayout& layout, const ShardingRules& rules,
                                                  const RankReferenceOptions& options, const std::string& name,
                                                  const std::vector<const MappedTensor*>& parts) {
  const MappedTensor& first = *parts[0];
  const TensorOutputs kind = layout.For(first.header.name, first.header.dtype, first.header.shape);
  if (kind.quantized && kind.scheme == kernels::Scheme::kPerTensor) {
    std::vector<float> scale;
    WEIGHTD_ASSIGN_OR_RETURN(ExpectedOutput data, PerTensorFused(layout, rules, options, name, parts, scale));
    const TensorOutputs fused = layout.Fused(name, true, first.header.dtype, data.spec.shape);
    return std::vector<ExpectedOutput>{
        std::move(data), {fused.scale, std::string(reinterpret_cast<const char*>(scale.data()), sizeof(float))}};
  }
  // Per-channel and block scales, and stored tensors, depend on their own rows only: stacked.
  std::vector<int64_t> shape = first.header.shape;
  shape[0] = 0;
  std::string data, scales;
  for (const MappedTensor* t : parts) {
    WEIGHTD_ASSIGN_OR_RETURN(std::vector<ExpectedOutput> outputs,
                             RankReference(layout, rules, options, t->header, t->bytes));
    shape[0] += outputs[0].spec.shape[0];
    data += outputs[0].bytes;
    if (outputs.size() > 1) scales += outputs[1].bytes;
  }
  const TensorOutputs fused = layout.Fused(name, kind.quantized, first.header.dtype, shape);
  std::vector<ExpectedOutput> out = {{fused.data, std::move(data)}};
  if (kind.quantized) out.push_back({fused.scale, std::move(scales)});
  return out;
}

absl::StatusOr<ExpectedOutput> PaddedVocab(const OutputLayout& layout, const RankReferenceOptions& options,
                                           const MappedTensor& t) {
  if (layout.For(t.header.name, t.header.dtype, t.header.shape).quantized) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", t.header.name, "': layout vllm pads vocab tensors, which must be stored unquantized"));
  }
  WEIGHTD_ASSIGN_OR_RETURN(TensorSplit split, VllmVocabSplit(t.header.name, t.header.shape, options.tp));
  std::vector<int64_t> shape = t.header.shape;
  shape[0] = VllmPaddedRowsPerRank(shape[0], options.tp);
  ExpectedOutput out{layout.For(t.header.name, t.header.dtype, shape).data, SliceOf(split, options.rank, t)};
  out.bytes.resize(out.spec.size, '\0');
  return out;
}

}  // namespace

absl::StatusOr<std::vector<ExpectedOutput>> VllmRankReference(const OutputLayout& layout, const ShardingRules& rules,
                                                              const RankReferenceOptions& options,
                                                              const MappedCheckpoint& source, bool pad_vocab) {
  std::vector<ExpectedOutput> expected;
  std::map<std::string, std::vector<const MappedTensor*>> fused;
  for (const auto& [name, tensor] : source.tensors()) {
    if (std::optional<FusedPart> part = VllmFusedPart(name)) {
      std::vector<const MappedTensor*>& parts = fused[part->fused];
      parts.resize(part->parts, nullptr);
      parts[part->part] = &tensor;
    } else if (pad_vocab && rules.For(name).kind == SplitKind::kVocab && !tensor.header.shape.empty()) {
      WEIGHTD_ASSIGN_OR_RETURN(ExpectedOutput out, PaddedVocab(layout, options, tensor));
      expected.push_back(std::move(out));
    } else {
      WEIGHTD_ASSIGN_OR_RETURN(std::vector<ExpectedOutput> outputs,
                               RankReference(layout, rules, options, tensor.header, tensor.bytes));
      for (ExpectedOutput& out : outputs) expected.push_back(std::move(out));
    }
  }
  for (const auto& [name, parts] : fused) {
    for (const MappedTensor* t : parts) {
      if (t == nullptr) return absl::InvalidArgumentError(absl::StrCat("'", name, "' misses a part"));
    }
    WEIGHTD_ASSIGN_OR_RETURN(std::vector<ExpectedOutput> outputs, Fused(layout, rules, options, name, parts));
    for (ExpectedOutput& out : outputs) expected.push_back(std::move(out));
  }
  return expected;
}

}  // namespace weightd::ctl
