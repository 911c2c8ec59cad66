// The three schemes' tilings (TileScales + QuantizeRows, and the fast kernels)
// against DESIGN.md's formula written out per element in this file: every
// element's tile found by its own row and column, the tile's amax taken over its
// real elements only (edge tiles of 127x129, 257x1000 are partial), the scale
// rules (zero -> 1.0; block: amax floored at fp32(1e-4)), then y = clamp(x * inv)
// and EncodeE4M3 (checked on its own in fp8_e4m3_test.cc). Awkward shapes, BF16,
// F16 and F32, zero rows and blocks, tiny blocks under the floor. Bytes compared.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/dtype.h"
#include "kernels/quantize.h"
#include "kernels/quantize_fast.h"
#include "tests/kernels/tensor_bytes.h"

namespace weightd::kernels {
namespace {

struct Shape {
  size_t rows, cols;
};

// Values that every input dtype holds exactly: 8 significant bits at most, and
// magnitudes where F16 is normal or a multiple of its 2^-24 step. Row 3 is zero,
// row 5 is -0.0, and rows 130..140 are tiny (below the block floor).
std::vector<float> Values(Shape shape, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> v(shape.rows * shape.cols);
  for (size_t r = 0; r < shape.rows; ++r) {
    for (size_t c = 0; c < shape.cols; ++c) {
      const int exponent = r >= 130 && r <= 140 ? -20 : static_cast<int>(rng() % 24) - 14;
      const float mantissa = static_cast<float>(128 + rng() % 128) / 128.0f;  // 8 bits
      float x = std::ldexp(mantissa, exponent);
      if (exponent < -14) x = std::ldexp(std::round(std::ldexp(x, 24)), -24);
      if (rng() % 2) x = -x;
      if (r == 3) x = 0.0f;
      if (r == 5) x = -0.0f;
      v[r * shape.cols + c] = x;
    }
  }
  return v;
}

struct Expected {
  std::vector<float> scales;
  std::vector<uint8_t> q;
};

Expected Formula(Scheme scheme, Shape shape, const std::vector<float>& x) {
  const size_t tr = scheme == Scheme::kPerTensor ? shape.rows : scheme == Scheme::kPerChannel ? 1 : 128;
  const size_t tc = scheme == Scheme::kBlock ? 128 : shape.cols;
  const size_t gr = (shape.rows + tr - 1) / tr, gc = (shape.cols + tc - 1) / tc;
  std::vector<float> amax(gr * gc, 0.0f);
  for (size_t r = 0; r < shape.rows; ++r) {
    for (size_t c = 0; c < shape.cols; ++c) {
      float& a = amax[(r / tr) * gc + c / tc];
      a = std::max(a, std::fabs(x[r * shape.cols + c]));
    }
  }
  Expected e{std::vector<float>(gr * gc), std::vector<uint8_t>(x.size())};
  for (size_t t = 0; t < amax.size(); ++t) {
    float a = amax[t];
    if (scheme == Scheme::kBlock) a = std::max(a, 1e-4f);
    e.scales[t] = a == 0.0f ? 1.0f : a / 448.0f;
  }
  for (size_t r = 0; r < shape.rows; ++r) {
    for (size_t c = 0; c < shape.cols; ++c) {
      const float inv = 1.0f / e.scales[(r / tr) * gc + c / tc];
      const float y = std::clamp(x[r * shape.cols + c] * inv, -448.0f, 448.0f);
      e.q[r * shape.cols + c] = EncodeE4M3(y);
    }
  }
  return e;
}

TEST(QuantizeTiling, AwkwardShapesEverySchemeEveryDTypeEqualTheFormula) {
  const Shape shapes[] = {{1, 1}, {1, 4097}, {127, 129}, {257, 1000}, {7, 128}, {128, 1}};
  uint32_t seed = 11;
  for (Shape shape : shapes) {
    const std::vector<float> x = Values(shape, seed++);
    for (Scheme scheme : {Scheme::kPerTensor, Scheme::kPerChannel, Scheme::kBlock}) {
      const Expected expected = Formula(scheme, shape, x);
      const Tiling tiling = TilingFor(scheme, shape.rows, shape.cols);
      ASSERT_EQ(tiling.num_tiles(), expected.scales.size());
      for (DType dtype : {DType::kBF16, DType::kF16, DType::kF32}) {
        const std::string what = absl::StrCat(SchemeName(scheme), " ", DTypeName(dtype), " ", shape.rows, "x",
                                              shape.cols);
        const std::vector<uint8_t> src = ExactBytes(dtype, x);
        std::vector<float> scales(tiling.num_tiles()), fast_scales(tiling.num_tiles());
        std::vector<uint8_t> q(x.size()), fast_q(x.size());
        ASSERT_TRUE(TileScales(scheme, dtype, src.data(), tiling, NonFinitePolicy::kFail, scales.data()).ok());
        QuantizeRows(dtype, src.data(), tiling, scales.data(), 0, shape.rows, q.data());
        ASSERT_TRUE(
            TileScalesFast(scheme, dtype, src.data(), tiling, NonFinitePolicy::kFail, fast_scales.data(), 4).ok());
        QuantizeRowsFast(dtype, src.data(), tiling, fast_scales.data(), 0, shape.rows, fast_q.data(), 4);
        EXPECT_EQ(ScaleBytes(scales), ScaleBytes(expected.scales)) << what;
        EXPECT_EQ(ScaleBytes(fast_scales), ScaleBytes(expected.scales)) << what;
        EXPECT_EQ(q, expected.q) << what;
        EXPECT_EQ(fast_q, expected.q) << what;
      }
    }
  }
}

TEST(QuantizeTiling, RowRangesGiveTheWholeTensorsBytes) {
  // A device streams a tensor through a staging buffer in row ranges that need not
  // align with 128-row blocks.
  const Shape shape{257, 300};
  const std::vector<float> x = Values(shape, 5);
  const std::vector<uint8_t> src = ExactBytes(DType::kBF16, x);
  for (Scheme scheme : {Scheme::kPerTensor, Scheme::kPerChannel, Scheme::kBlock}) {
    const Expected expected = Formula(scheme, shape, x);
    const Tiling tiling = TilingFor(scheme, shape.rows, shape.cols);
    std::vector<uint8_t> q(x.size()), fast_q(x.size());
    for (size_t begin = 0; begin < shape.rows; begin += 45) {
      const size_t end = std::min(shape.rows, begin + 45);
      QuantizeRows(DType::kBF16, src.data() + begin * shape.cols * 2, tiling, expected.scales.data(), begin, end,
                   q.data() + begin * shape.cols);
      QuantizeRowsFast(DType::kBF16, src.data() + begin * shape.cols * 2, tiling, expected.scales.data(), begin, end,
                       fast_q.data() + begin * shape.cols, 2);
    }
    EXPECT_EQ(q, expected.q) << SchemeName(scheme);
    EXPECT_EQ(fast_q, expected.q) << SchemeName(scheme);
  }
}

}  // namespace
}  // namespace weightd::kernels
