// Parked rows converted in place, run by run, give the codes of the CPU reference:
// for 2- and 4-byte elements, odd row counts and every run length, with each run's
// rows taken in either order (a GPU kernel takes them in any), because no in-place
// run writes a byte it or a later run still reads.
#include "services/device/parked_tensor.h"

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/quantize.h"
#include "kernels/quantize_fast.h"

namespace weightd {
namespace {

std::vector<uint8_t> RandomElements(kernels::DType dtype, uint64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> out(n * kernels::DTypeSize(dtype));
  for (uint64_t i = 0; i < n; ++i) {
    const float f = std::normal_distribution<float>(0.0f, 1.0f)(rng) * static_cast<float>(1 + rng() % 64);
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    if (dtype == kernels::DType::kBF16) {
      const uint16_t b = static_cast<uint16_t>(bits >> 16);
      std::memcpy(out.data() + 2 * i, &b, 2);
    } else {
      std::memcpy(out.data() + 4 * i, &bits, 4);
    }
  }
  return out;
}

// Converts `parked` rows lying at the start of `dest` (rows x cols codes long) as
// ParkedRuns orders them, each run's rows forwards or backwards.
void ConvertInPlace(kernels::DType dtype, uint8_t* dest, uint64_t parked, uint64_t cols, uint64_t max_rows,
                    float scale, bool backwards) {
  const uint64_t element = kernels::DTypeSize(dtype);
  const kernels::Tiling one_row = kernels::TilingFor(kernels::Scheme::kPerTensor, 1, cols);
  std::vector<uint8_t> buffer;
  for (const ParkedRun& run : ParkedRuns(parked, max_rows)) {
    ASSERT_LT(run.begin, run.end);
    uint8_t* out = dest + run.begin * cols;
    if (run.in_place) {
      // What the run writes and what it reads do not meet.
      EXPECT_LE(run.end * cols, element * run.begin * cols) << "run [" << run.begin << ", " << run.end << ")";
    } else {
      buffer.assign((run.end - run.begin) * cols, 0);
      out = buffer.data();
    }
    for (uint64_t k = 0; k < run.end - run.begin; ++k) {
      const uint64_t r = backwards ? run.end - 1 - k : run.begin + k;
      kernels::QuantizeRows(dtype, dest + r * cols * element, one_row, &scale, 0, 1, out + (r - run.begin) * cols);
    }
    if (!run.in_place) std::memcpy(dest + run.begin * cols, buffer.data(), buffer.size());
  }
}

TEST(ParkedTensorTest, InPlaceConversionGivesTheReferenceCodes) {
  for (kernels::DType dtype : {kernels::DType::kBF16, kernels::DType::kF32}) {
    for (uint64_t rows : {2, 3, 7, 64, 301}) {
      const uint64_t cols = 24;
      const uint64_t parked = ParkableRows(dtype, rows);
      ASSERT_EQ(parked, rows / kernels::DTypeSize(dtype));
      if (parked == 0) continue;
      const std::vector<uint8_t> src = RandomElements(dtype, rows * cols, static_cast<uint32_t>(rows));
      const kernels::Tiling tiling = kernels::TilingFor(kernels::Scheme::kPerTensor, parked, cols);
      float scale = 0;
      ASSERT_TRUE(kernels::TileScales(kernels::Scheme::kPerTensor, dtype, src.data(), tiling,
                                      kernels::NonFinitePolicy::kFail, &scale)
                      .ok());
      std::vector<uint8_t> want(parked * cols);
      kernels::QuantizeRows(dtype, src.data(), tiling, &scale, 0, parked, want.data());
      for (uint64_t max_rows : {uint64_t{1}, uint64_t{3}, uint64_t{16}, parked}) {
        for (bool backwards : {false, true}) {
          std::vector<uint8_t> dest(rows * cols, 0xAB);
          ASSERT_LE(parked * cols * kernels::DTypeSize(dtype), dest.size());
          std::memcpy(dest.data(), src.data(), parked * cols * kernels::DTypeSize(dtype));
          ConvertInPlace(dtype, dest.data(), parked, cols, max_rows, scale, backwards);
          dest.resize(parked * cols);
          EXPECT_EQ(dest, want) << kernels::DTypeName(dtype) << " rows " << rows << " runs of " << max_rows
                                << (backwards ? " backwards" : "");
        }
      }
    }
  }
}

TEST(ParkedTensorTest, RunsCoverTheRowsInOrderAndOnlyTheFirstGoesThroughABuffer) {
  const std::vector<ParkedRun> runs = ParkedRuns(100, 8);
  ASSERT_FALSE(runs.empty());
  EXPECT_EQ(runs.front().begin, 0u);
  EXPECT_FALSE(runs.front().in_place);
  for (size_t i = 1; i < runs.size(); ++i) {
    EXPECT_EQ(runs[i].begin, runs[i - 1].end);
    EXPECT_TRUE(runs[i].in_place);
    EXPECT_LE(runs[i].end - runs[i].begin, 8u);
    EXPECT_LE(runs[i].end, 2 * runs[i].begin);
  }
  EXPECT_EQ(runs.back().end, 100u);
  EXPECT_TRUE(ParkedRuns(0, 8).empty());
  EXPECT_EQ(ParkedRuns(5, 0).size(), 5u);  // runs of one row at least
  EXPECT_EQ(ParkableRows(kernels::DType::kF8E4M3, 100), 0u);
  EXPECT_EQ(ParkableRows(kernels::DType::kBF16, 1), 0u);
  EXPECT_EQ(ParkableRows(kernels::DType::kF16, 9), 4u);
}

// Stored BF16 at [1000, +200) quantized to 100 codes: in place, or onto a range that
// touches none of it; any overlap that is not in place is INTERNAL.
TEST(ParkedTensor, StoredBytesAndTheirCodesEitherCoincideOrDoNotOverlap) {
  EXPECT_TRUE(CheckStoredAndCodes(1000, 1000, 100, 2).ok());
  EXPECT_TRUE(CheckStoredAndCodes(1000, 900, 100, 2).ok());   // codes end where the bytes begin
  EXPECT_TRUE(CheckStoredAndCodes(1000, 1200, 100, 2).ok());  // codes begin where the bytes end
  EXPECT_EQ(CheckStoredAndCodes(1000, 901, 100, 2).code(), absl::StatusCode::kInternal);
  EXPECT_EQ(CheckStoredAndCodes(1000, 1199, 100, 2).code(), absl::StatusCode::kInternal);
  EXPECT_EQ(CheckStoredAndCodes(1000, 1050, 100, 2).code(), absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace weightd
