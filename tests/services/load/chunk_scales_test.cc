// Scales taken chunk by chunk from copies of whole tile rows equal the scales of the
// whole tensor (the CPU reference), for per-channel and block tilings, with a
// partial last chunk and odd shapes; chunk sizes that hold no tile row say so.
#include "services/device/chunk_scales.h"

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
// from its own copy.
std::vector<float> ChunkedScales(kernels::Scheme scheme, const kernels::Tiling& tiling, const uint16_t* src,
                                 uint64_t per_chunk, absl::Status* status) {
  std::vector<float> scales(tiling.num_tiles(), -1.0f);
  for (uint64_t tile_row = 0; tile_row < tiling.grid_rows(); tile_row += per_chunk) {
    const uint64_t first_row = tile_row * tiling.tile_rows;
    const uint64_t rows = std::min<uint64_t>(tiling.rows, first_row + per_chunk * tiling.tile_rows) - first_row;
    const std::vector<uint16_t> copy(src + first_row * tiling.cols, src + (first_row + rows) * tiling.cols);
    *status = ChunkScales(scheme, kernels::DType::kBF16, tiling, tile_row,
                          std::min<uint64_t>(per_chunk, tiling.grid_rows() - tile_row), copy.data(), src,
                          kernels::NonFinitePolicy::kFail, scales.data() + tile_row * tiling.grid_cols());
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
