// Scales taken from copies of a tensor's chunks (a staging slot's pinned bytes)
// instead of in a pass over the whole tensor before it is copied: a chunk of whole
// tile rows holds everything its tiles' scales need, and they are taken in the pass
// that copies it, so the host reads the tensor once. Per-channel (one row per tile
// row) and block (128 rows) scales; a per-tensor scale is one tile row of the whole tensor.
// Thread-safe (pure functions).
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/dtype.h"
#include "kernels/quantize.h"

namespace weightd {

// Whole tile rows of `tiling` per chunk of at most `max_bytes` of `dtype` elements
// and `max_scales` scales; 0 where not even one fits.
uint64_t TileRowsPerChunk(kernels::DType dtype, const kernels::Tiling& tiling, uint64_t max_bytes,
                          uint64_t max_scales);

// Copies tile rows [first_tile_row, +tile_rows) of the tensor at `src` (its elements
// from first_tile_row * tile_rows * cols on, to the end of the tensor at most) to
// `copy`, which receives them from its start, and takes their scales in the same pass
// (kernels::CopyTileScalesFast) into `scales` (tile_rows * grid_cols). Where a value is
// not finite under kFail: the error kernels::TileScales gives for the whole tensor at
// `src`, so the message names the element as it would. Adds the time spent to
// `copy_seconds`.
absl::Status CopyTakingChunkScales(kernels::Scheme scheme, kernels::DType dtype, const kernels::Tiling& tiling,
                                   uint64_t first_tile_row, uint64_t tile_rows, const void* src, void* copy,
                                   kernels::NonFinitePolicy policy, float* scales, double& copy_seconds);

}  // namespace weightd
