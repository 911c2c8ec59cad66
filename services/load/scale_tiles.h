// Where a rank's scales sit among the whole tensor's: a rank's scales of a
// quantized slice are the whole tensor's tiles restricted to the slice wherever
// scale scope `tensor` holds (splits of block tensors are on the 128 grid;
// per-tensor and row-split per-channel amax are all-reduced). A peer ships the
// whole tensor's scales and each receiving rank takes its tiles from them.
// Pure function; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/quantize.h"
#include "services/load/planner.h"

namespace weightd {

// For each tile of rank `rank`'s slice (row-major over its tile grid), the index
// of the same tile in `whole` (the whole tensor's tiling, row-major): per-tensor
// tile 0; per-channel the slice's rows; block the slice's 128 x 128 tiles.
std::vector<size_t> WholeTilesOfRank(const TensorTask& task, size_t rank, const kernels::Tiling& whole);

}  // namespace weightd
