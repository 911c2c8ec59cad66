#include "services/load/scale_tiles.h"

namespace weightd {

std::vector<size_t> WholeTilesOfRank(const TensorTask& task, size_t rank, const kernels::Tiling& whole) {
  const kernels::Tiling& own = task.parts[rank].tiling;
  std::vector<size_t> tiles(own.num_tiles(), 0);
  if (task.scheme == kernels::Scheme::kPerTensor) return tiles;
  const bool split = !task.split.replicated();
  const size_t begin = split ? static_cast<size_t>(task.split.begin[rank]) : 0;
  // Tile rows (cols) of the whole grid before the slice's first.
  const size_t row_offset = split && task.split.dim == 0 ? begin / own.tile_rows : 0;
  const size_t col_offset =
      split && task.split.dim == 1 && task.scheme == kernels::Scheme::kBlock ? begin / own.tile_cols : 0;
  for (size_t i = 0; i < own.grid_rows(); ++i) {
    for (size_t j = 0; j < own.grid_cols(); ++j) {
      tiles[i * own.grid_cols() + j] = (i + row_offset) * whole.grid_cols() + j + col_offset;
    }
  }
  return tiles;
}

}  // namespace weightd
