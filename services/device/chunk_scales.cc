#include "services/device/chunk_scales.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "kernels/quantize_fast.h"

namespace weightd {

uint64_t TileRowsPerChunk(kernels::DType dtype, const kernels::Tiling& tiling, uint64_t max_bytes,
                          uint64_t max_scales) {
  const uint64_t tile_row_bytes = static_cast<uint64_t>(tiling.tile_rows) * tiling.cols * kernels::DTypeSize(dtype);
  if (tile_row_bytes == 0) return 0;
  return std::min(max_bytes / tile_row_bytes, max_scales / std::max<uint64_t>(1, tiling.grid_cols()));
}

absl::Status CopyTakingChunkScales(kernels::Scheme scheme, kernels::DType dtype, const kernels::Tiling& tiling,
                                   uint64_t first_tile_row, uint64_t tile_rows, const void* src, void* copy,
                                   kernels::NonFinitePolicy policy, float* scales, double& copy_seconds) {
  const uint64_t element = kernels::DTypeSize(dtype);
  const uint64_t first_row = first_tile_row * tiling.tile_rows;
  kernels::Tiling chunk = tiling;
  chunk.rows = static_cast<size_t>(std::min<uint64_t>(tiling.rows, first_row + tile_rows * tiling.tile_rows) - first_row);
  const auto start = std::chrono::steady_clock::now();
  const absl::Status taken = kernels::CopyTileScalesFast(
      scheme, dtype, copy, static_cast<const uint8_t*>(src) + first_row * tiling.cols * element, chunk, policy, scales);
  copy_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (taken.ok()) return taken;
  // Named as the whole tensor's scales would name it (the element's index in the tensor).
  std::vector<float> all(tiling.num_tiles());
  absl::Status whole = kernels::TileScalesFast(scheme, dtype, src, tiling, policy, all.data());
  return whole.ok() ? taken : whole;
}

}  // namespace weightd
