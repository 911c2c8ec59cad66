// The fast CPU kernels (kernels/quantize_fast.h) against the reference
// (kernels/quantize.h: TileScales, QuantizeRows), byte for byte: every scheme,
// every dtype, awkward shapes, all-zero rows, subnormals, saturation, NaN/Inf,
// several thread counts, and sweeps over whole bit-pattern spaces.
#include "kernels/quantize_fast.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/dtype.h"
#include "kernels/quantize.h"
#include "tests/kernels/tensor_bytes.h"

namespace weightd::kernels {
namespace {

using ::testing::HasSubstr;

constexpr Scheme kSchemes[] = {Scheme::kPerTensor, Scheme::kPerChannel, Scheme::kBlock};
constexpr DType kDTypes[] = {DType::kBF16, DType::kF16, DType::kF32, DType::kF8E4M3};

// Random element bytes of `dtype`: mostly ordinary values of varied magnitude,
// with zeros, negative zeros and subnormals mixed in.
std::vector<uint8_t> RandomBytes(DType dtype, size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> bytes(n * DTypeSize(dtype));
  for (size_t i = 0; i < n; ++i) {
    const uint32_t r = rng();
    uint32_t bits32 = 0;
    switch (r % 16) {
      case 0: bits32 = 0; break;
      case 1: bits32 = 0x80000000u; break;
      case 2: bits32 = (rng() & 0x807FFFFFu); break;  // fp32 subnormal
      default: {
        const int exponent = 127 - 24 + static_cast<int>(rng() % 36);  // 2^-24 .. 2^11
        bits32 = (rng() & 0x80000000u) | (static_cast<uint32_t>(exponent) << 23) | (rng() & 0x7FFFFFu);
      }
    }
    uint8_t* at = bytes.data() + i * DTypeSize(dtype);
    switch (dtype) {
      case DType::kBF16: {
        uint16_t h = static_cast<uint16_t>(bits32 >> 16);
        std::memcpy(at, &h, 2);
        break;
      }
      case DType::kF16: {
        uint16_t h = static_cast<uint16_t>(r >> 16);
        if ((h & 0x7C00) == 0x7C00) h &= 0xBFFF;  // keep it finite
        std::memcpy(at, &h, 2);
        break;
      }
      case DType::kF32: std::memcpy(at, &bits32, 4); break;
      case DType::kF8E4M3: {
        uint8_t q = static_cast<uint8_t>(r >> 8);
        if ((q & 0x7F) == 0x7F) q &= 0xFE;
        *at = q;
        break;
      }
      default: ADD_FAILURE() << "not a quantizable dtype";
    }
  }
  return bytes;
}

// Writes a value of `dtype` at element i (F8: its nearest code; others: exactly).
void Put(DType dtype, std::vector<uint8_t>& bytes, size_t i, float v) {
  if (dtype == DType::kF8E4M3) {
    bytes[i] = EncodeE4M3(v);
    return;
  }
  const std::vector<uint8_t> one = ExactBytes(dtype, {v});
  std::copy(one.begin(), one.end(), bytes.begin() + static_cast<std::ptrdiff_t>(i * DTypeSize(dtype)));
}

struct Result {
  absl::Status status;
  std::vector<float> scales;
  std::vector<uint8_t> q;
};

Result RunRef(Scheme scheme, DType dtype, const std::vector<uint8_t>& src, size_t rows, size_t cols,
              NonFinitePolicy policy) {
  const Tiling tiling = TilingFor(scheme, rows, cols);
  Result r{absl::OkStatus(), std::vector<float>(tiling.num_tiles()), std::vector<uint8_t>(rows * cols)};
  r.status = TileScales(scheme, dtype, src.data(), tiling, policy, r.scales.data());
  if (r.status.ok()) QuantizeRows(dtype, src.data(), tiling, r.scales.data(), 0, rows, r.q.data());
  return r;
}

Result RunFast(Scheme scheme, DType dtype, const std::vector<uint8_t>& src, size_t rows, size_t cols,
               NonFinitePolicy policy, int threads) {
  const Tiling tiling = TilingFor(scheme, rows, cols);
  Result r{absl::OkStatus(), std::vector<float>(tiling.num_tiles()), std::vector<uint8_t>(rows * cols)};
  r.status = TileScalesFast(scheme, dtype, src.data(), tiling, policy, r.scales.data(), threads);
  if (r.status.ok()) QuantizeRowsFast(dtype, src.data(), tiling, r.scales.data(), 0, rows, r.q.data(), threads);
  return r;
}

void ExpectSame(const Result& ref, const Result& fast, const std::string& what) {
  ASSERT_EQ(ref.status, fast.status) << what;
  ASSERT_EQ(ref.scales.size(), fast.scales.size()) << what;
  ASSERT_EQ(0, std::memcmp(ref.scales.data(), fast.scales.data(), ref.scales.size() * sizeof(float))) << what;
  for (size_t i = 0; i < ref.q.size(); ++i) {
    ASSERT_EQ(ref.q[i], fast.q[i]) << what << " element " << i;
  }
}

struct Shape {
  size_t rows, cols;
};
constexpr Shape kShapes[] = {{1, 1}, {1, 7}, {1, 4097}, {7, 4097}, {127, 129}, {129, 257}, {300, 128}, {257, 1000}};

TEST(QuantizeFast, EqualsReferenceOnAwkwardShapesEveryDTypeEverySchemeAndThreadCount) {
  uint32_t seed = 1;
  for (Shape shape : kShapes) {
    for (DType dtype : kDTypes) {
      std::vector<uint8_t> src = RandomBytes(dtype, shape.rows * shape.cols, seed++);
      for (Scheme scheme : kSchemes) {
        const Result ref = RunRef(scheme, dtype, src, shape.rows, shape.cols, NonFinitePolicy::kFail);
        for (int threads : {1, 3, 8}) {
          ExpectSame(ref, RunFast(scheme, dtype, src, shape.rows, shape.cols, NonFinitePolicy::kFail, threads),
                     absl::StrCat(SchemeName(scheme), " ", DTypeName(dtype), " ", shape.rows, "x", shape.cols,
                                  " threads ", threads));
        }
      }
    }
  }
}

TEST(QuantizeFast, LargeTensorSplitAcrossThreads) {
  // Big enough that every scheme really runs on several threads.
  const size_t rows = 1031, cols = 1543;
  std::vector<uint8_t> src = RandomBytes(DType::kBF16, rows * cols, 99);
  for (Scheme scheme : kSchemes) {
    ExpectSame(RunRef(scheme, DType::kBF16, src, rows, cols, NonFinitePolicy::kFail),
               RunFast(scheme, DType::kBF16, src, rows, cols, NonFinitePolicy::kFail, 4), SchemeName(scheme));
  }
}

TEST(QuantizeFast, TheDefaultThreadCountCanBeSetAndGivesTheSameBytes) {
  const int cores = DefaultQuantizeThreads();
  const size_t rows = 1031, cols = 1543;
  std::vector<uint8_t> src = RandomBytes(DType::kBF16, rows * cols, 7);
  for (int threads : {1, 3}) {
    SetDefaultQuantizeThreads(threads);
    EXPECT_EQ(DefaultQuantizeThreads(), threads);
    for (Scheme scheme : kSchemes) {
      ExpectSame(RunRef(scheme, DType::kBF16, src, rows, cols, NonFinitePolicy::kFail),
                 RunFast(scheme, DType::kBF16, src, rows, cols, NonFinitePolicy::kFail, 0),
                 absl::StrCat(SchemeName(scheme), " default threads ", threads));
    }
  }
  SetDefaultQuantizeThreads(0);
  EXPECT_EQ(DefaultQuantizeThreads(), cores);
}

TEST(QuantizeFast, PassesInFlightShareTheCoresUnlessACountIsSet) {
  const int cores = DefaultQuantizeThreads();
  {
    const HostPass first;
    EXPECT_EQ(first.threads(), cores);
    const HostPass second;
    EXPECT_EQ(second.threads(), std::max(1, cores / 2));
    std::vector<std::unique_ptr<HostPass>> many;
    for (int i = 0; i < 2 * cores; ++i) many.push_back(std::make_unique<HostPass>());
    EXPECT_EQ(many.back()->threads(), 1);  // never none
    EXPECT_EQ(DefaultQuantizeThreads(), 1);
  }
  EXPECT_EQ(HostPass().threads(), cores);  // the passes above are done: all cores again
  SetDefaultQuantizeThreads(3);
  {
    const HostPass a, b;
    EXPECT_EQ(b.threads(), 3);  // a set count is per pass, however many run
  }
  SetDefaultQuantizeThreads(0);
}

TEST(QuantizeFast, AThreadThatIsOneOfManyCallersTakesItsShareFromItsFirstPass) {
  const int cores = DefaultQuantizeThreads();
  {
    const ConcurrentCallers readers(4);
    EXPECT_EQ(HostPass().threads(), std::max(1, cores / 4));  // alone in flight, still a quarter
    {
      const ConcurrentCallers all(2 * cores);
      EXPECT_EQ(HostPass().threads(), 1);
    }
    EXPECT_EQ(HostPass().threads(), std::max(1, cores / 4));
  }
  EXPECT_EQ(HostPass().threads(), cores);
  // Another thread is not one of them.
  const ConcurrentCallers readers(cores);
  int elsewhere = 0;
  std::thread([&] { elsewhere = HostPass().threads(); }).join();
  EXPECT_EQ(elsewhere, cores);
}

TEST(QuantizeFast, AllZeroTensorsAndRows) {
  for (DType dtype : kDTypes) {
    std::vector<uint8_t> src = RandomBytes(dtype, 300 * 257, 7);
    // Rows 0..129 zero (a whole 128-row block, and per-channel zero rows), one -0.0 row.
    std::fill(src.begin(), src.begin() + 130 * 257 * DTypeSize(dtype), uint8_t{0});
    for (size_t c = 0; c < 257; ++c) Put(dtype, src, 5 * 257 + c, -0.0f);
    for (Scheme scheme : kSchemes) {
      ExpectSame(RunRef(scheme, dtype, src, 300, 257, NonFinitePolicy::kFail),
                 RunFast(scheme, dtype, src, 300, 257, NonFinitePolicy::kFail, 3), SchemeName(scheme));
      std::vector<uint8_t> zeros(64 * 64 * DTypeSize(dtype), 0);
      Result fast = RunFast(scheme, dtype, zeros, 64, 64, NonFinitePolicy::kFail, 2);
      ExpectSame(RunRef(scheme, dtype, zeros, 64, 64, NonFinitePolicy::kFail), fast, "zeros");
    }
  }
}

TEST(QuantizeFast, NonFiniteFailsAtTheSameElementAsTheReference) {
  for (DType dtype : {DType::kBF16, DType::kF16, DType::kF32}) {
    for (Scheme scheme : kSchemes) {
      std::vector<uint8_t> src = RandomBytes(dtype, 300 * 257, 3);
      Put(dtype, src, 250 * 257 + 3, std::numeric_limits<float>::infinity());
      Put(dtype, src, 200 * 257 + 100, std::numeric_limits<float>::quiet_NaN());
      Result fast = RunFast(scheme, dtype, src, 300, 257, NonFinitePolicy::kFail, 4);
      EXPECT_THAT(fast.status.message(), HasSubstr(absl::StrCat("element ", 200 * 257 + 100)));
      ExpectSame(RunRef(scheme, dtype, src, 300, 257, NonFinitePolicy::kFail), fast, SchemeName(scheme));
      EXPECT_EQ(FindNonFinite(dtype, src.data(), 300 * 257), size_t{200 * 257 + 100});
    }
  }
}

TEST(QuantizeFast, SaturateGivesTheReferenceBytesForNaNAndInf) {
  for (DType dtype : {DType::kBF16, DType::kF16, DType::kF32}) {
    for (Scheme scheme : kSchemes) {
      std::vector<uint8_t> src = RandomBytes(dtype, 129 * 257, 4);
      Put(dtype, src, 0, std::numeric_limits<float>::quiet_NaN());
      Put(dtype, src, 1, std::numeric_limits<float>::infinity());
      Put(dtype, src, 2, -std::numeric_limits<float>::infinity());
      Put(dtype, src, 128 * 257 + 256, -std::numeric_limits<float>::quiet_NaN());
      Result fast = RunFast(scheme, dtype, src, 129, 257, NonFinitePolicy::kSaturate, 2);
      ExpectSame(RunRef(scheme, dtype, src, 129, 257, NonFinitePolicy::kSaturate), fast, SchemeName(scheme));
      EXPECT_EQ(fast.q[0], 0x7E);
      EXPECT_EQ(fast.q[1], 0x7E);
      EXPECT_EQ(fast.q[2], 0xFE);
      EXPECT_EQ(fast.q[128 * 257 + 256], 0x7E);
    }
  }
}

TEST(QuantizeFast, AbsMaxFastEqualsTheReferenceUnderBothPolicies) {
  for (DType dtype : kDTypes) {
    for (size_t n : {size_t{0}, size_t{1}, size_t{31}, size_t{4099}}) {
      std::vector<uint8_t> src = RandomBytes(dtype, n, 7);
      for (NonFinitePolicy policy : {NonFinitePolicy::kFail, NonFinitePolicy::kSaturate}) {
        absl::StatusOr<float> ref = AbsMax(dtype, src.data(), n, policy);
        absl::StatusOr<float> fast = AbsMaxFast(dtype, src.data(), n, policy);
        ASSERT_TRUE(ref.ok() && fast.ok()) << DTypeName(dtype) << " n=" << n;
        EXPECT_EQ(std::bit_cast<uint32_t>(*ref), std::bit_cast<uint32_t>(*fast)) << DTypeName(dtype) << " n=" << n;
      }
    }
  }
  for (DType dtype : {DType::kBF16, DType::kF16, DType::kF32}) {
    std::vector<uint8_t> src = RandomBytes(dtype, 1000, 8);
    Put(dtype, src, 900, std::numeric_limits<float>::infinity());
    Put(dtype, src, 700, -std::numeric_limits<float>::quiet_NaN());
    absl::StatusOr<float> failed = AbsMaxFast(dtype, src.data(), 1000, NonFinitePolicy::kFail);
    EXPECT_EQ(failed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(failed.status().message(), HasSubstr("element 700"));
    absl::StatusOr<float> ref = AbsMax(dtype, src.data(), 1000, NonFinitePolicy::kSaturate);
    absl::StatusOr<float> fast = AbsMaxFast(dtype, src.data(), 1000, NonFinitePolicy::kSaturate);
    ASSERT_TRUE(ref.ok() && fast.ok());
    EXPECT_EQ(*ref, *fast) << DTypeName(dtype);
    EXPECT_TRUE(std::isfinite(*fast));
  }
}

// CopyAbsMaxFast, and StreamCopyAbsMaxFast (non-temporal stores), at every dst
// alignment within a 32-byte line (an element-aligned dst takes the streaming loop).
TEST(QuantizeFast, CopyAbsMaxFastCopiesAndEqualsTheReference) {
  using CopyAbsMax = absl::StatusOr<float> (*)(DType, void*, const void*, size_t, NonFinitePolicy);
  for (CopyAbsMax copy_abs_max : {&CopyAbsMaxFast, &StreamCopyAbsMaxFast}) {
    for (size_t shift = 0; shift < 32; ++shift) {
      for (DType dtype : kDTypes) {
        for (size_t n : {size_t{0}, size_t{1}, size_t{33}, size_t{5001}}) {
          std::vector<uint8_t> src = RandomBytes(dtype, n, 9);
          if (n > 40 && dtype != DType::kF8E4M3) Put(dtype, src, 40, std::numeric_limits<float>::infinity());
          for (NonFinitePolicy policy : {NonFinitePolicy::kFail, NonFinitePolicy::kSaturate}) {
            std::vector<uint8_t> copy(shift + src.size() + 1, 0xCD);
            absl::StatusOr<float> ref = AbsMax(dtype, src.data(), n, policy);
            absl::StatusOr<float> fast = copy_abs_max(dtype, copy.data() + shift, src.data(), n, policy);
            EXPECT_EQ(std::vector<uint8_t>(copy.begin() + shift, copy.end() - 1), src)
                << DTypeName(dtype) << " n=" << n << " shift=" << shift;
            EXPECT_EQ(std::count(copy.begin(), copy.begin() + shift, 0xCD), shift) << "wrote before the start";
            EXPECT_EQ(copy.back(), 0xCD) << "wrote past the end";
            ASSERT_EQ(ref.ok(), fast.ok()) << DTypeName(dtype) << " n=" << n;
            if (!ref.ok()) {
              EXPECT_EQ(fast.status().code(), absl::StatusCode::kInvalidArgument);
              EXPECT_THAT(fast.status().message(), HasSubstr("element 40"));
              continue;
            }
            EXPECT_EQ(std::bit_cast<uint32_t>(*ref), std::bit_cast<uint32_t>(*fast)) << DTypeName(dtype) << " n=" << n;
          }
        }
      }
    }
  }
}

// Copy and scales in one pass: the bytes copied (nothing past them), the reference's
// scales, and under kFail its error, for every scheme, dtype and awkward shape, with
// NaN and Inf in some tiles (saturate leaves them out, as the reference does).
TEST(QuantizeFast, CopyTileScalesFastCopiesAndGivesTheReferenceScales) {
  for (DType dtype : kDTypes) {
    for (Scheme scheme : kSchemes) {
      for (const Shape shape : kShapes) {
        for (bool non_finite : {false, true}) {
          if (non_finite && dtype == DType::kF8E4M3) continue;
          const size_t n = shape.rows * shape.cols;
          std::vector<uint8_t> src = RandomBytes(dtype, n, static_cast<uint32_t>(n + shape.cols));
          if (non_finite) {
            Put(dtype, src, n - 1, -std::numeric_limits<float>::infinity());
            Put(dtype, src, n / 2, std::numeric_limits<float>::quiet_NaN());
          }
          const Tiling tiling = TilingFor(scheme, shape.rows, shape.cols);
          for (NonFinitePolicy policy : {NonFinitePolicy::kFail, NonFinitePolicy::kSaturate}) {
            const std::string what = absl::StrCat(DTypeName(dtype), " ", SchemeName(scheme), " ", shape.rows, "x",
                                                  shape.cols, non_finite ? " non-finite" : "",
                                                  policy == NonFinitePolicy::kFail ? " fail" : " saturate");
            std::vector<float> ref(tiling.num_tiles(), -1.0f), fast(tiling.num_tiles(), -1.0f);
            const absl::Status ref_status = TileScales(scheme, dtype, src.data(), tiling, policy, ref.data());
            std::vector<uint8_t> copy(src.size() + 1, 0xCD);
            const absl::Status fast_status =
                CopyTileScalesFast(scheme, dtype, copy.data(), src.data(), tiling, policy, fast.data());
            EXPECT_EQ(std::vector<uint8_t>(copy.begin(), copy.end() - 1), src) << what;
            EXPECT_EQ(copy.back(), 0xCD) << what << ": wrote past the end";
            ASSERT_EQ(ref_status, fast_status) << what;
            if (ref_status.ok()) {
              EXPECT_EQ(0, std::memcmp(ref.data(), fast.data(), ref.size() * sizeof(float))) << what;
            }
          }
        }
      }
    }
  }
}

// Every BF16 and F16 pattern as a row of its own (per-channel scales) and, in rows of
// 64, as 128-wide block tiles: the scales of both fast routes equal the reference's
// under saturate (NaN and Inf left out), subnormals and the largest finite values included.
TEST(QuantizeFast, EveryBf16AndF16PatternGivesTheReferenceScales) {
  std::vector<uint8_t> src(size_t{1} << 17);
  for (uint32_t p = 0; p < (1u << 16); ++p) {
    src[2 * p] = static_cast<uint8_t>(p & 0xFF);
    src[2 * p + 1] = static_cast<uint8_t>(p >> 8);
  }
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    for (const Shape shape : {Shape{size_t{1} << 16, 1}, Shape{size_t{1} << 10, 64}}) {
      for (Scheme scheme : {Scheme::kPerChannel, Scheme::kBlock}) {
        const Tiling tiling = TilingFor(scheme, shape.rows, shape.cols);
        std::vector<float> ref(tiling.num_tiles()), fast(tiling.num_tiles()), copied(tiling.num_tiles());
        std::vector<uint8_t> copy(src.size());
        ASSERT_TRUE(TileScales(scheme, dtype, src.data(), tiling, NonFinitePolicy::kSaturate, ref.data()).ok());
        ASSERT_TRUE(TileScalesFast(scheme, dtype, src.data(), tiling, NonFinitePolicy::kSaturate, fast.data(), 2).ok());
        ASSERT_TRUE(CopyTileScalesFast(scheme, dtype, copy.data(), src.data(), tiling, NonFinitePolicy::kSaturate,
                                       copied.data())
                        .ok());
        const std::string what = absl::StrCat(DTypeName(dtype), " ", SchemeName(scheme), " cols ", shape.cols);
        EXPECT_EQ(0, std::memcmp(ref.data(), fast.data(), ref.size() * sizeof(float))) << what;
        EXPECT_EQ(0, std::memcmp(ref.data(), copied.data(), ref.size() * sizeof(float))) << what;
      }
    }
  }
}

// QuantizeRows with fixed scales, so that every input pattern meets ordinary,
// saturating, subnormal-producing, and overflowing (Inf) inverses.
void SweepWithScales(DType dtype, const std::vector<uint8_t>& src, size_t n) {
  for (float scale : {1.0f, 0.0066964286f, 3.0e-3f, 1.0f / 448.0f, 1e-20f, 1e-38f, 1e-45f, 0.0f, 7.5e10f}) {
    const Tiling tiling = TilingFor(Scheme::kPerTensor, 1, n);
    std::vector<uint8_t> ref(n), fast(n);
    QuantizeRows(dtype, src.data(), tiling, &scale, 0, 1, ref.data());
    QuantizeRowsFast(dtype, src.data(), tiling, &scale, 0, 1, fast.data(), 2);
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(ref[i], fast[i]) << DTypeName(dtype) << " element " << i << " scale " << scale;
    }
  }
}

TEST(QuantizeFast, EveryBf16AndF16PatternUnderManyScales) {
  std::vector<uint8_t> src(65536 * 2);
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint16_t v = static_cast<uint16_t>(h);
    std::memcpy(src.data() + 2 * h, &v, 2);
  }
  SweepWithScales(DType::kBF16, src, 65536);
  SweepWithScales(DType::kF16, src, 65536);
  std::vector<uint8_t> codes(256);
  for (int q = 0; q < 256; ++q) codes[q] = static_cast<uint8_t>(q);
  SweepWithScales(DType::kF8E4M3, codes, 256);
}

TEST(QuantizeFast, F32PatternsAcrossTheWholeRange) {
  // Every 251st fp32 bit pattern (17 million), plus the E4M3 rounding boundaries.
  std::vector<uint8_t> src;
  src.reserve((size_t{1} << 32) / 251 * 4 + 4096);
  auto push = [&](uint32_t bits) {
    uint8_t b[4];
    std::memcpy(b, &bits, 4);
    src.insert(src.end(), b, b + 4);
  };
  for (uint64_t bits = 0; bits < (uint64_t{1} << 32); bits += 251) push(static_cast<uint32_t>(bits));
  for (int q = 0; q < 127; ++q) {
    const uint32_t mid = std::bit_cast<uint32_t>(DecodeE4M3(static_cast<uint8_t>(q)));
    for (int d = -2; d <= 2; ++d) {
      push(mid + d);
      push((mid + d) | 0x80000000u);
      push(mid + (1u << 19) + d);  // halfway to the next normal code
    }
  }
  SweepWithScales(DType::kF32, src, src.size() / 4);
}

}  // namespace
}  // namespace weightd::kernels
