#include "services/device/chunk_scales.h"

#include <algorithm>
#include <chrono>
#include <cstring>
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

absl::Status CopyTakingChunkScales(kernels::Scheme scheme, kernels::DType dtype, const kernels::Tiling& tiling,
                                   uint64_t first_tile_row, uint64_t tile_rows, const void* src, void* copy,
                                   uint64_t piece_bytes, kernels::NonFinitePolicy policy, float* scales,
                                   double& copy_seconds) {
  const uint64_t element = kernels::DTypeSize(dtype);
  const uint64_t tile_row_elements = static_cast<uint64_t>(tiling.tile_rows) * tiling.cols;
  const uint64_t total = static_cast<uint64_t>(tiling.rows) * tiling.cols;
  const uint64_t per_piece = std::max<uint64_t>(1, piece_bytes / std::max<uint64_t>(1, tile_row_elements * element));
  const uint64_t first = first_tile_row * tile_row_elements;
  const auto start = std::chrono::steady_clock::now();
  absl::Status taken;
  for (uint64_t done = 0; done < tile_rows && taken.ok(); done += per_piece) {
    const uint64_t n = std::min(per_piece, tile_rows - done);
    const uint64_t begin = (first_tile_row + done) * tile_row_elements;
    const uint64_t end = std::min(total, (first_tile_row + done + n) * tile_row_elements);
    if (end <= begin) break;
    kernels::Tiling piece = tiling;
    piece.rows = static_cast<size_t>((end - begin) / tiling.cols);
    taken = kernels::CopyTileScalesFast(scheme, dtype, static_cast<uint8_t*>(copy) + (begin - first) * element,
                                        static_cast<const uint8_t*>(src) + begin * element, piece, policy,
                                        scales + done * tiling.grid_cols());
  }
  copy_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (taken.ok()) return taken;
  // Named as the whole tensor's scales would name it (the element's index in the tensor).
  std::vector<float> all(tiling.num_tiles());
  absl::Status whole = kernels::TileScalesFast(scheme, dtype, src, tiling, policy, all.data());
  return whole.ok() ? taken : whole;
}

}  // namespace weightd
