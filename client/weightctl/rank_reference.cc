#include "client/weightctl/rank_reference.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "kernels/quantize.h"

namespace weightd::ctl {
namespace {

std::string Slice(const TensorSplit& split, uint32_t rank, const std::vector<int64_t>& shape, size_t element,
                  const void* whole) {
  const SliceBytes slice = SliceBytesOf(split, rank, shape, element);
  std::string out(slice.size(), '\0');
  GatherSlice(slice, static_cast<const char*>(whole), out.data());
  return out;
}

struct Reference {
  std::string fp8;
  std::vector<float> scales;
};

absl::StatusOr<Reference> Quantize(const TensorOutputs& out, kernels::DType dtype, const void* src,
                                   kernels::NonFinitePolicy policy) {
  Reference ref;
  ref.scales.resize(out.tiling.num_tiles());
  absl::Status scaled = kernels::TileScales(out.scheme, dtype, src, out.tiling, policy, ref.scales.data());
  if (!scaled.ok()) return absl::InvalidArgumentError(absl::StrCat(out.data.name, ": ", scaled.message()));
  ref.fp8.resize(out.data.size);
  kernels::QuantizeRows(dtype, src, out.tiling, ref.scales.data(), 0, out.tiling.rows,
                        reinterpret_cast<uint8_t*>(ref.fp8.data()));
  return ref;
}

// The rank's part of the whole tensor's tile grid: per-tensor and replicated
// scales whole, per-channel the rows of a dim-0 part, block the blocks of the part.
std::string ScalesOfPart(const TensorOutputs& whole, const TensorSplit& split, uint32_t rank,
                         const std::vector<float>& scales) {
  if (whole.scheme == kernels::Scheme::kPerTensor || split.replicated() ||
      (whole.scheme == kernels::Scheme::kPerChannel && split.dim != 0)) {
    return std::string(reinterpret_cast<const char*>(scales.data()), scales.size() * sizeof(float));
  }
  const int64_t tile = static_cast<int64_t>(split.dim == 0 ? whole.tiling.tile_rows : whole.tiling.tile_cols);
  TensorSplit grid = split;
  for (size_t r = 0; r < grid.begin.size(); ++r) {
    grid.length[r] = (split.begin[r] + split.length[r] + tile - 1) / tile - split.begin[r] / tile;
    grid.begin[r] = split.begin[r] / tile;
  }
  const std::vector<int64_t> grid_shape = {static_cast<int64_t>(whole.tiling.grid_rows()),
                                           static_cast<int64_t>(whole.tiling.grid_cols())};
  return Slice(grid, rank, grid_shape, sizeof(float), scales.data());
}

}  // namespace

absl::StatusOr<std::vector<ExpectedOutput>> RankReference(const OutputLayout& layout, const ShardingRules& rules,
                                                          const RankReferenceOptions& options,
                                                          const safetensors::TensorHeader& t, const uint8_t* bytes) {
  const TensorOutputs whole = layout.For(t.name, t.dtype, t.shape);
  const bool block = whole.quantized && whole.scheme == kernels::Scheme::kBlock;
  WEIGHTD_ASSIGN_OR_RETURN(TensorSplit split, SplitTensor(t.name, t.shape, rules.For(t.name), options.tp,
                                                          options.heads, block ? kernels::kBlockSize : 1));
  const std::vector<int64_t> shape = split.SliceShape(t.shape, options.rank);
  TensorOutputs part = layout.For(t.name, t.dtype, shape);
  const std::string source = Slice(split, options.rank, t.shape, kernels::DTypeSize(t.dtype), bytes);
  if (!whole.quantized) return std::vector<ExpectedOutput>{{part.data, source}};
  std::vector<ExpectedOutput> out = {{part.data, {}}, {part.scale, {}}};
  if (options.scope == v1::SCALE_SCOPE_SHARD && !split.replicated()) {
    WEIGHTD_ASSIGN_OR_RETURN(Reference alone, Quantize(part, t.dtype, source.data(), options.policy));
    out[0].bytes = std::move(alone.fp8);
    out[1].bytes.assign(reinterpret_cast<const char*>(alone.scales.data()), alone.scales.size() * sizeof(float));
    return out;
  }
  WEIGHTD_ASSIGN_OR_RETURN(Reference ref, Quantize(whole, t.dtype, bytes, options.policy));
  out[0].bytes = Slice(split, options.rank, t.shape, 1, ref.fp8.data());
  out[1].bytes = ScalesOfPart(whole, split, options.rank, ref.scales);
  return out;
}

}  // namespace weightd::ctl
