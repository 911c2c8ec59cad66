// Scales taken chunk by chunk, in the pass that copies whole tile rows, equal the
// scales of the whole tensor (the CPU reference), for per-channel and block tilings,
// with a partial last chunk and odd shapes; a non-finite value is named by its index
// in the whole tensor; chunk sizes that hold no tile row say so.
#include "services/device/chunk_scales.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace weightd {
namespace {

std::vector<uint16_t> RandomBf16(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint16_t> out(n);
  for (uint16_t& v : out) {
    float f = std::normal_distribution<float>(0.0f, 1.0f)(rng) * static_cast<float>(1 + rng() % 64);
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    v = static_cast<uint16_t>(bits >> 16);
  }
  return out;
}

// The scales of `tiling` over `src` taken in chunks of `per_chunk` tile rows, each
// copied on its own (CopyTakingChunkScales, as the staging ring does).
std::vector<float> ChunkedScales(kernels::Scheme scheme, const kernels::Tiling& tiling, const uint16_t* src,
                                 uint64_t per_chunk, absl::Status* status) {
  std::vector<float> scales(tiling.num_tiles(), -1.0f);
  double seconds = 0;
  for (uint64_t tile_row = 0; tile_row < tiling.grid_rows(); tile_row += per_chunk) {
    const uint64_t first_row = tile_row * tiling.tile_rows;
    const uint64_t rows = std::min<uint64_t>(tiling.rows, first_row + per_chunk * tiling.tile_rows) - first_row;
    std::vector<uint16_t> copy(rows * tiling.cols);
    *status = CopyTakingChunkScales(scheme, kernels::DType::kBF16, tiling, tile_row,
                                    std::min<uint64_t>(per_chunk, tiling.grid_rows() - tile_row), src, copy.data(),
                                    kernels::NonFinitePolicy::kFail, scales.data() + tile_row * tiling.grid_cols(),
                                    seconds);
    if (!status->ok()) break;
  }
  return scales;
}

TEST(ChunkScales, ChunksOfWholeTileRowsGiveTheWholeTensorsScales) {
  struct Shape {
    size_t rows, cols;
  };
  for (kernels::Scheme scheme : {kernels::Scheme::kPerChannel, kernels::Scheme::kBlock}) {
    for (const Shape shape : {Shape{300, 257}, Shape{1000, 128}, Shape{129, 1000}, Shape{1, 77}}) {
      const kernels::Tiling tiling = kernels::TilingFor(scheme, shape.rows, shape.cols);
      const std::vector<uint16_t> src = RandomBf16(shape.rows * shape.cols, static_cast<uint32_t>(shape.rows));
      std::vector<float> reference(tiling.num_tiles());
      ASSERT_TRUE(kernels::TileScales(scheme, kernels::DType::kBF16, src.data(), tiling,
                                      kernels::NonFinitePolicy::kFail, reference.data())
                      .ok());
      for (uint64_t per_chunk : {uint64_t{1}, uint64_t{2}, uint64_t{3}, uint64_t{1000}}) {
        SCOPED_TRACE(testing::Message() << shape.rows << "x" << shape.cols << " scheme "
                                        << static_cast<int>(scheme) << " tile rows per chunk " << per_chunk);
        absl::Status status;
        const std::vector<float> chunked = ChunkedScales(scheme, tiling, src.data(), per_chunk, &status);
        ASSERT_TRUE(status.ok()) << status;
        EXPECT_EQ(std::memcmp(chunked.data(), reference.data(), reference.size() * sizeof(float)), 0);
      }
    }
  }
}

TEST(ChunkScales, ANonFiniteValueIsNamedByItsIndexInTheWholeTensor) {
  const kernels::Tiling tiling = kernels::TilingFor(kernels::Scheme::kPerChannel, 40, 33);
  std::vector<uint16_t> src = RandomBf16(40 * 33, 5);
  src[31 * 33 + 7] = 0x7F80;  // +inf, in the fourth chunk of 10 rows
  std::vector<float> reference(tiling.num_tiles());
  const absl::Status whole = kernels::TileScales(kernels::Scheme::kPerChannel, kernels::DType::kBF16, src.data(),
                                                 tiling, kernels::NonFinitePolicy::kFail, reference.data());
  ASSERT_FALSE(whole.ok());
  absl::Status chunked;
  ChunkedScales(kernels::Scheme::kPerChannel, tiling, src.data(), 10, &chunked);
  EXPECT_EQ(chunked, whole);
  EXPECT_NE(chunked.message().find(std::to_string(31 * 33 + 7)), std::string::npos) << chunked;
}

// A chunk's copy holds exactly its bytes, and its scales are the whole tensor's,
// chunk after chunk, the last one partial.
TEST(ChunkScales, CopyingChunkByChunkGivesTheBytesAndTheWholeTensorsScales) {
  for (kernels::Scheme scheme : {kernels::Scheme::kPerChannel, kernels::Scheme::kBlock}) {
    const kernels::Tiling tiling = kernels::TilingFor(scheme, 300, 257);
    const std::vector<uint16_t> src = RandomBf16(300 * 257, 11);
    std::vector<float> reference(tiling.num_tiles());
    ASSERT_TRUE(kernels::TileScales(scheme, kernels::DType::kBF16, src.data(), tiling, kernels::NonFinitePolicy::kFail,
                                    reference.data())
                    .ok());
    SCOPED_TRACE(testing::Message() << "scheme " << static_cast<int>(scheme));
    const uint64_t row_elements = static_cast<uint64_t>(tiling.tile_rows) * tiling.cols;
    std::vector<float> scales(tiling.num_tiles(), -1.0f);
    const uint64_t per_chunk = 2;  // tile rows per chunk, the last one partial
    double copy_seconds = 0;
    for (uint64_t tile_row = 0; tile_row < tiling.grid_rows(); tile_row += per_chunk) {
      const uint64_t tile_rows = std::min<uint64_t>(per_chunk, tiling.grid_rows() - tile_row);
      const uint64_t begin = tile_row * row_elements;
      const uint64_t end = std::min<uint64_t>(src.size(), (tile_row + tile_rows) * row_elements);
      std::vector<uint16_t> copy(end - begin + 1, 0xABCD);
      ASSERT_TRUE(CopyTakingChunkScales(scheme, kernels::DType::kBF16, tiling, tile_row, tile_rows, src.data(),
                                        copy.data(), kernels::NonFinitePolicy::kFail,
                                        scales.data() + tile_row * tiling.grid_cols(), copy_seconds)
                      .ok());
      EXPECT_TRUE(std::equal(copy.begin(), copy.end() - 1, src.begin() + begin)) << "tile row " << tile_row;
      EXPECT_EQ(copy.back(), 0xABCD) << "copied past the chunk";
    }
    EXPECT_EQ(std::memcmp(scales.data(), reference.data(), reference.size() * sizeof(float)), 0);
    EXPECT_GT(copy_seconds, 0.0);
  }
}

TEST(ChunkScales, TileRowsPerChunkCountsDataAndScales) {
  // Block tiles: a tile row of 128 rows x 1000 BF16 = 256000 bytes, 8 scales.
  const kernels::Tiling block = kernels::TilingFor(kernels::Scheme::kBlock, 1024, 1000);
  EXPECT_EQ(TileRowsPerChunk(kernels::DType::kBF16, block, 256000, 64), 1u);
  EXPECT_EQ(TileRowsPerChunk(kernels::DType::kBF16, block, 255999, 64), 0u);
  EXPECT_EQ(TileRowsPerChunk(kernels::DType::kBF16, block, 10 * 256000, 64), 8u);  // 64 scales: 8 tile rows
  // Per-tensor: one tile row is the whole tensor (2048000 bytes): a chunk holds it or none.
  const kernels::Tiling tensor = kernels::TilingFor(kernels::Scheme::kPerTensor, 1024, 1000);
  EXPECT_EQ(TileRowsPerChunk(kernels::DType::kBF16, tensor, 1 << 20, 1 << 10), 0u);
  EXPECT_GE(TileRowsPerChunk(kernels::DType::kBF16, tensor, 8 << 20, 1 << 10), 1u);
  const kernels::Tiling empty = kernels::TilingFor(kernels::Scheme::kPerChannel, 0, 0);
  EXPECT_EQ(TileRowsPerChunk(kernels::DType::kBF16, empty, 8 << 20, 1 << 10), 0u);
}

}  // namespace
}  // namespace weightd
