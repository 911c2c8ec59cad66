#include "services/device/chunk_scales.h"

#include <algorithm>
#include <vector>

#include "kernels/quantize_fast.h"

namespace weightd {

uint64_t TileRowsPerChunk(kernels::DType dtype, const kernels::Tiling& tiling, uint64_t max_bytes,
                          uint64_t max_scales) {
  const uint64_t tile_row_bytes = static_cast<uint64_t>(tiling.tile_rows) * tiling.cols * kernels::DTypeSize(dtype);
  if (tile_row_bytes == 0) return 0;
  return std::min(max_bytes / tile_row_bytes, max_scales / std::max<uint64_t>(1, tiling.grid_cols()));
}

absl::Status ChunkScales(kernels::Scheme scheme, kernels::DType dtype, const kernels::Tiling& tiling,
                         uint64_t first_tile_row, uint64_t tile_rows, const void* copy, const void* src,
                         kernels::NonFinitePolicy policy, float* scales) {
  const uint64_t first_row = first_tile_row * tiling.tile_rows;
  kernels::Tiling part = tiling;
  part.rows = static_cast<size_t>(std::min<uint64_t>(tiling.rows, first_row + tile_rows * tiling.tile_rows) - first_row);
  absl::Status taken = kernels::TileScalesFast(scheme, dtype, copy, part, policy, scales);
  if (taken.ok()) return taken;
  std::vector<float> all(tiling.num_tiles());
  absl::Status whole = kernels::TileScalesFast(scheme, dtype, src, tiling, policy, all.data());
  return whole.ok() ? taken : whole;
}

}  // namespace weightd
