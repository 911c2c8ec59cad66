// The streamed shard bytes (weightd-push-gen) are the written file's bytes
// (weightd-gen), in any read sizes; the fast fill keeps the exact fill's values
// and random access.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "bench/gen/shard_bytes.h"
#include "bench/gen/tensor_fill.h"
#include "bench/gen/write_checkpoint.h"
#include "gtest/gtest.h"

namespace weightd::bench {
namespace {

using kernels::DType;

std::string ReadAll(ShardByteSource& source, size_t piece) {
  std::string out;
  std::vector<uint8_t> buffer(piece);
  while (const size_t n = source.Read(buffer)) out.append(reinterpret_cast<const char*>(buffer.data()), n);
  return out;
}

class ShardBytesTest : public testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    std::string tmpl = testing::TempDir() + "/weightd_shard_bytes_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

// Mixed dtypes put F32 tensors at offsets that are not multiples of 4, so odd
// read sizes split elements.
TEST_P(ShardBytesTest, StreamedEqualsWrittenInAnyPieceSize) {
  GenOptions options;
  options.config = *LlamaConfig::Preset("tiny");
  options.out_dir = dir_;
  options.shards = 3;
  options.mixed_dtypes = true;
  options.seed = 11;
  options.fast_fill = GetParam();
  ASSERT_TRUE(WriteCheckpoint(options).ok());
  const CheckpointPlan plan = *PlanCheckpoint(options);
  for (int s = 0; s < 3; ++s) {
    std::ifstream in(dir_ + "/" + plan.files[s], std::ios::binary);
    const std::string file(std::istreambuf_iterator<char>(in), {});
    for (size_t piece : {size_t{1}, size_t{3}, size_t{4093}, size_t{1} << 20}) {
      ShardByteSource source(options, plan, s);
      EXPECT_EQ(source.size(), file.size());
      EXPECT_TRUE(ReadAll(source, piece) == file) << plan.files[s] << " piece " << piece;
      EXPECT_EQ(source.position(), file.size());
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fill, ShardBytesTest, testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Fast" : "Exact"; });

TEST(FastTensorFillTest, FirstPeriodIsExactAndRangesEqualWhole) {
  for (DType dtype : {DType::kBF16, DType::kF16, DType::kF32}) {
    const size_t size = kernels::DTypeSize(dtype);
    const uint64_t n = 3 * kFastPeriod + 123;
    const FastTensorFill fast(5, "model.layers.0.mlp.up_proj.weight", dtype);
    std::vector<uint8_t> whole(n * size), exact(kFastPeriod * size);
    fast.Fill(0, whole);
    FillTensor(5, "model.layers.0.mlp.up_proj.weight", dtype, 0, exact);
    EXPECT_TRUE(std::equal(exact.begin(), exact.end(), whole.begin()));
    for (uint64_t offset : {uint64_t{1}, kFastPeriod - 7, 2 * kFastPeriod + 5}) {
      std::vector<uint8_t> part((n - offset) * size);
      fast.Fill(offset, part);
      EXPECT_TRUE(std::equal(part.begin(), part.end(), whole.begin() + offset * size)) << offset;
    }
  }
}

TEST(FastTensorFillTest, BlocksAreRotatedPerBlockAndPerTensor) {
  const uint64_t blocks = 16;
  std::vector<uint8_t> a(blocks * kFastPeriod * 2), b(a.size());
  FastTensorFill(0, "model.layers.0.mlp.up_proj.weight", DType::kBF16).Fill(0, a);
  FastTensorFill(0, "model.layers.1.mlp.up_proj.weight", DType::kBF16).Fill(0, b);
  EXPECT_NE(a, b);
  std::set<std::vector<uint8_t>> distinct;
  for (uint64_t k = 0; k < blocks; ++k) {
    distinct.emplace(a.begin() + k * kFastPeriod * 2, a.begin() + (k + 1) * kFastPeriod * 2);
  }
  EXPECT_GT(distinct.size(), blocks / 2);
}

}  // namespace
}  // namespace weightd::bench
