// Where a rank's slice lies in a window of the whole tensor's bytes, and which
// of the whole tensor's tiles a rank's scales are: the two facts peers ship by.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "services/load/scale_tiles.h"
#include "services/load/tensor_split.h"

namespace weightd {
namespace {

// A 4 x 6 tensor of 1-byte elements, cut on dim 1 into columns [2, 5): rows of
// 3 bytes, 6 apart, from byte 2.
TensorSplit ColumnsTwoToFive() {
  TensorSplit split;
  split.kind = SplitKind::kRow;
  split.dim = 1;
  split.begin = {0, 2};
  split.length = {2, 3};
  return split;
}

TEST(ForEachPieceInTest, EveryWindowOfTheWholeTensorGivesTheSliceBytesItHolds) {
  const std::vector<int64_t> shape = {4, 6};
  std::string whole;
  for (int i = 0; i < 24; ++i) whole.push_back(static_cast<char>('a' + i));
  const SliceBytes slice = SliceBytesOf(ColumnsTwoToFive(), 1, shape, 1);
  std::string expected(slice.size(), '\0');
  GatherSlice(slice, whole.data(), expected.data());
  for (uint64_t lo = 0; lo <= 24; ++lo) {
    for (uint64_t hi = lo; hi <= 24; ++hi) {
      std::string got;
      uint64_t next_local = 0;  // pieces are consecutive in the slice
      const SliceWindow w = ForEachPieceIn(slice, lo, hi, [&](uint64_t at, uint64_t local, uint64_t n) {
        if (!got.empty()) EXPECT_EQ(local, next_local);
        EXPECT_GE(at, lo);
        EXPECT_LE(at + n, hi);
        next_local = local + n;
        got += whole.substr(at, n);
      });
      if (w.empty()) {
        EXPECT_TRUE(got.empty()) << lo << " " << hi;
        continue;
      }
      EXPECT_EQ(got, expected.substr(w.local_begin, w.local_end - w.local_begin)) << lo << " " << hi;
    }
  }
}

TEST(ForEachPieceInTest, AOneSegmentSliceIsFoundFromAnyOffset) {
  // One rank of a row split: its slice is the whole tensor, one segment, though
  // the split's stride is a row.
  SliceBytes slice;
  slice.first = 0;
  slice.segments = 1;
  slice.segment_bytes = 24;
  slice.stride = 6;
  uint64_t got = 0;
  const SliceWindow w = ForEachPieceIn(slice, 13, 20, [&](uint64_t at, uint64_t local, uint64_t n) {
    EXPECT_EQ(at, 13u);
    EXPECT_EQ(local, 13u);
    got += n;
  });
  EXPECT_EQ(got, 7u);
  EXPECT_EQ(w.local_begin, 13u);
  EXPECT_EQ(w.local_end, 20u);
}

TEST(WholeTilesOfRankTest, BlockTilesOfAColumnSliceAreTheWholeGridsColumns) {
  TensorTask task;
  task.kind = TaskKind::kQuantize;
  task.scheme = kernels::Scheme::kBlock;
  task.split.dim = 1;
  task.split.begin = {0, 256};
  task.split.length = {256, 128};
  const kernels::Tiling whole = kernels::TilingFor(kernels::Scheme::kBlock, 300, 384);  // 3 x 3 tiles
  for (size_t r = 0; r < 2; ++r) {
    RankPart part;
    part.tiling = kernels::TilingFor(kernels::Scheme::kBlock, 300, static_cast<size_t>(task.split.length[r]));
    task.parts.push_back(part);
  }
  EXPECT_EQ(WholeTilesOfRank(task, 0, whole), (std::vector<size_t>{0, 1, 3, 4, 6, 7}));
  EXPECT_EQ(WholeTilesOfRank(task, 1, whole), (std::vector<size_t>{2, 5, 8}));
}

TEST(WholeTilesOfRankTest, PerChannelRowsFollowADim0SplitAndAllRowsADim1Split) {
  TensorTask task;
  task.kind = TaskKind::kQuantize;
  task.scheme = kernels::Scheme::kPerChannel;
  task.split.dim = 0;
  task.split.begin = {0, 2};
  task.split.length = {2, 2};
  const kernels::Tiling whole = kernels::TilingFor(kernels::Scheme::kPerChannel, 4, 8);
  for (int r = 0; r < 2; ++r) {
    RankPart part;
    part.tiling = kernels::TilingFor(kernels::Scheme::kPerChannel, 2, 8);
    task.parts.push_back(part);
  }
  EXPECT_EQ(WholeTilesOfRank(task, 1, whole), (std::vector<size_t>{2, 3}));
  task.split.dim = 1;
  task.split.begin = {0, 4};
  task.split.length = {4, 4};
  for (RankPart& p : task.parts) p.tiling = kernels::TilingFor(kernels::Scheme::kPerChannel, 4, 4);
  EXPECT_EQ(WholeTilesOfRank(task, 1, whole), (std::vector<size_t>{0, 1, 2, 3}));
  task.scheme = kernels::Scheme::kPerTensor;
  for (RankPart& p : task.parts) p.tiling = kernels::TilingFor(kernels::Scheme::kPerTensor, 4, 4);
  EXPECT_EQ(WholeTilesOfRank(task, 1, whole), (std::vector<size_t>{0}));
}

}  // namespace
}  // namespace weightd
