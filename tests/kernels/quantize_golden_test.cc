// Golden vectors for the tiled quantization API (TileScales + QuantizeRows and
// their fast twins), every scheme, BF16 / F16 / F32 inputs holding the same
// values: the expected FP8 codes and scale bytes are literals, computed once
// with exact rational arithmetic (nearest E4M3 code by search, ties to even) and
// fp32 rounding, independently of the kernels. No tolerances anywhere.
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/dtype.h"
#include "kernels/quantize.h"
#include "kernels/quantize_fast.h"
#include "tests/kernels/tensor_bytes.h"

namespace weightd::kernels {
namespace {

struct Golden {
  float x;
  uint8_t q;
};

// At scale 1 (each row holds +-448, so every scheme's amax is 448): y = x, and
// the code is E4M3's own rounding. Every normal exponent's tie between mantissas
// 0 and 1 (down, to even), 1 and 2 (up, to even) and 7 and the next exponent
// (up, carrying); 432, the 416/448 tie, to 448; every subnormal, every subnormal
// tie; the smallest subnormal, half of it (a tie, to zero), just above and just
// below half; the smallest normal; the largest normal; both zeros.
constexpr Golden kAtUnitScale[] = {
    {0x1.1p-6f, 0x08},  {0x1.3p-6f, 0x0A},  {0x1.fp-6f, 0x10},  {0x1.1p-5f, 0x10},   {0x1.3p-5f, 0x12},
    {0x1.fp-5f, 0x18},  {0x1.1p-4f, 0x18},  {0x1.3p-4f, 0x1A},  {0x1.fp-4f, 0x20},   {0x1.1p-3f, 0x20},
    {0x1.3p-3f, 0x22},  {0x1.fp-3f, 0x28},  {0x1.1p-2f, 0x28},  {0x1.3p-2f, 0x2A},   {0x1.fp-2f, 0x30},
    {0x1.1p-1f, 0x30},  {0x1.3p-1f, 0x32},  {0x1.fp-1f, 0x38},  {0x1.1p+0f, 0x38},   {0x1.3p+0f, 0x3A},
    {0x1.fp+0f, 0x40},  {0x1.1p+1f, 0x40},  {0x1.3p+1f, 0x42},  {0x1.fp+1f, 0x48},   {0x1.1p+2f, 0x48},
    {0x1.3p+2f, 0x4A},  {0x1.fp+2f, 0x50},  {0x1.1p+3f, 0x50},  {0x1.3p+3f, 0x52},   {0x1.fp+3f, 0x58},
    {0x1.1p+4f, 0x58},  {0x1.3p+4f, 0x5A},  {0x1.fp+4f, 0x60},  {0x1.1p+5f, 0x60},   {0x1.3p+5f, 0x62},
    {0x1.fp+5f, 0x68},  {0x1.1p+6f, 0x68},  {0x1.3p+6f, 0x6A},  {0x1.fp+6f, 0x70},   {0x1.1p+7f, 0x70},
    {0x1.3p+7f, 0x72},  {0x1.fp+7f, 0x78},  {0x1.1p+8f, 0x78},  {0x1.3p+8f, 0x7A},   {0x1.bp+8f, 0x7E},
    {0x1.0p-9f, 0x01},  {0x1.0p-8f, 0x02},  {0x1.8p-8f, 0x03},  {0x1.0p-7f, 0x04},   {0x1.4p-7f, 0x05},
    {0x1.8p-7f, 0x06},  {0x1.cp-7f, 0x07},  {0x1.0p-10f, 0x00}, {0x1.8p-9f, 0x02},   {0x1.4p-8f, 0x02},
    {0x1.cp-8f, 0x04},  {0x1.2p-7f, 0x04},  {0x1.6p-7f, 0x06},  {0x1.ap-7f, 0x06},   {0x1.ep-7f, 0x08},
    {0x1.02p-10f, 0x01}, {0x1.fcp-11f, 0x00}, {0x1.0p-6f, 0x08}, {0x1.cp+8f, 0x7E},   {0.0f, 0x00},
    {-0.0f, 0x80},
};

const DType kInputDTypes[] = {DType::kBF16, DType::kF16, DType::kF32};
const Scheme kSchemes[] = {Scheme::kPerTensor, Scheme::kPerChannel, Scheme::kBlock};

struct Quantized {
  std::vector<float> scales;
  std::vector<uint8_t> q;
};

// Reference and fast kernels on the same input; both must succeed and agree.
Quantized QuantizeBoth(Scheme scheme, DType dtype, const std::vector<uint8_t>& src, size_t rows, size_t cols,
              NonFinitePolicy policy = NonFinitePolicy::kFail) {
  const Tiling tiling = TilingFor(scheme, rows, cols);
  Quantized ref{std::vector<float>(tiling.num_tiles()), std::vector<uint8_t>(rows * cols)};
  Quantized fast = ref;
  EXPECT_TRUE(TileScales(scheme, dtype, src.data(), tiling, policy, ref.scales.data()).ok());
  QuantizeRows(dtype, src.data(), tiling, ref.scales.data(), 0, rows, ref.q.data());
  EXPECT_TRUE(TileScalesFast(scheme, dtype, src.data(), tiling, policy, fast.scales.data(), 3).ok());
  QuantizeRowsFast(dtype, src.data(), tiling, fast.scales.data(), 0, rows, fast.q.data(), 3);
  EXPECT_EQ(ScaleBytes(ref.scales), ScaleBytes(fast.scales)) << "fast scales differ";
  EXPECT_EQ(ref.q, fast.q) << "fast codes differ";
  return ref;
}

std::string Label(Scheme scheme, DType dtype) { return absl::StrCat(SchemeName(scheme), " ", DTypeName(dtype)); }

TEST(QuantizeGolden, EveryRoundingCaseAtUnitScaleEverySchemeEveryDType) {
  // Row 0: 448 and the table; row 1: the same negated (the codes with the sign flipped).
  const size_t cols = 1 + std::size(kAtUnitScale);
  std::vector<float> values(2 * cols);
  std::vector<uint8_t> expected(2 * cols);
  values[0] = 448.0f, expected[0] = 0x7E;
  values[cols] = -448.0f, expected[cols] = 0xFE;
  for (size_t i = 0; i < std::size(kAtUnitScale); ++i) {
    values[1 + i] = kAtUnitScale[i].x, expected[1 + i] = kAtUnitScale[i].q;
    values[cols + 1 + i] = -kAtUnitScale[i].x, expected[cols + 1 + i] = kAtUnitScale[i].q ^ 0x80;
  }
  for (DType dtype : kInputDTypes) {
    const std::vector<uint8_t> src = ExactBytes(dtype, values);
    for (Scheme scheme : kSchemes) {
      const Quantized out = QuantizeBoth(scheme, dtype, src, 2, cols);
      for (float s : out.scales) EXPECT_EQ(std::bit_cast<uint32_t>(s), 0x3F800000u) << Label(scheme, dtype);
      EXPECT_EQ(Hex(out.q), Hex(expected)) << Label(scheme, dtype);
    }
  }
}

// One row whose amax makes y land on either side of 448: amax 1.0234375 gives
// y = 448.00003 (clamped), amax 1.0 gives y = 447.99997 (rounds up to 448). The
// other elements: just above and below the 432 tie after scaling, a half, and
// three values around half the smallest subnormal after scaling.
struct ScaledCase {
  float amax;
  bool y_above_448;  // fp32(amax * fp32(1 / scale)) > 448
  uint32_t scale_bits;
  std::vector<float> x;
  std::vector<uint8_t> q;
};

TEST(QuantizeGolden, JustBelowAndAbove448AfterScaling) {
  const ScaledCase cases[] = {
      {1.0234375f, true, 0x3B15B6DBu,
       {1.0234375f, -1.0234375f, 0x1.fap-1f, 0x1.f8p-1f, 0x1.06p-1f, 0x1.18p-19f, 0x1.28p-19f, 0x1.3p-19f},
       {0x7E, 0xFE, 0x7E, 0x7D, 0x76, 0x00, 0x00, 0x01}},
      {1.0f, false, 0x3B124925u,
       {1.0f, -1.0f, 0x1.eep-1f, 0x1.ecp-1f, 0x1.0p-1f, 0x1.18p-19f, 0x1.28p-19f, 0x1.3p-19f},
       {0x7E, 0xFE, 0x7E, 0x7D, 0x76, 0x00, 0x01, 0x01}},
  };
  for (const ScaledCase& c : cases) {
    const float y = c.amax * (1.0f / std::bit_cast<float>(c.scale_bits));
    ASSERT_EQ(y > 448.0f, c.y_above_448) << y;
    ASSERT_NE(y, 448.0f);
    for (DType dtype : kInputDTypes) {
      const std::vector<uint8_t> src = ExactBytes(dtype, c.x);
      for (Scheme scheme : kSchemes) {
        const Quantized out = QuantizeBoth(scheme, dtype, src, 1, c.x.size());
        ASSERT_EQ(out.scales.size(), 1u);
        EXPECT_EQ(std::bit_cast<uint32_t>(out.scales[0]), c.scale_bits) << Label(scheme, dtype);
        EXPECT_EQ(Hex(out.q), Hex(c.q)) << Label(scheme, dtype) << " amax " << c.amax;
      }
    }
  }
}

// The worked examples of docs/quantization.md, byte for byte.
const std::vector<float> kExample = {1.0f, -2.5f, 0.3125f, -0.010009765625f, 3.0f, 0.10009765625f};

TEST(QuantizeGolden, WorkedExamplePerTensor) {
  for (DType dtype : kInputDTypes) {
    const Quantized out = QuantizeBoth(Scheme::kPerTensor, dtype, ExactBytes(dtype, kExample), 2, 3);
    EXPECT_EQ(ScaleBytes(out.scales), "b76ddb3b") << DTypeName(dtype);
    EXPECT_EQ(Hex(out.q), "71fc64bc7e57") << DTypeName(dtype);
  }
}

TEST(QuantizeGolden, WorkedExamplePerChannel) {
  for (DType dtype : kInputDTypes) {
    const Quantized out = QuantizeBoth(Scheme::kPerChannel, dtype, ExactBytes(dtype, kExample), 2, 3);
    EXPECT_EQ(ScaleBytes(out.scales), "6edbb63b" "b76ddb3b") << DTypeName(dtype);  // 2.5/448, 3/448
    EXPECT_EQ(Hex(out.q), "73fe66" "bc7e57") << DTypeName(dtype);
  }
}

TEST(QuantizeGolden, WorkedExampleBlockWithTheAmaxFloor) {
  // amax 7.49e-5 is below the 1e-4 floor: the block's scale is fp32(fp32(1e-4) / 448).
  const std::vector<float> tiny = {0x1.a4p-15f, -0x1.5p-16f, 0.0f, 0x1.0p-20f, -0x1.3ap-14f, -0.0f};
  for (DType dtype : kInputDTypes) {
    const Quantized block = QuantizeBoth(Scheme::kBlock, dtype, ExactBytes(dtype, tiny), 2, 3);
    EXPECT_EQ(ScaleBytes(block.scales), "adac6f34") << DTypeName(dtype);
    EXPECT_EQ(Hex(block.q), "76eb0049fa80") << DTypeName(dtype);
    // Per tensor there is no floor: the same values scale to fill the range.
    const Quantized per_tensor = QuantizeBoth(Scheme::kPerTensor, dtype, ExactBytes(dtype, tiny), 2, 3);
    EXPECT_EQ(ScaleBytes(per_tensor.scales), "b76d3334") << DTypeName(dtype);
    EXPECT_EQ(Hex(per_tensor.q), "79ef004bfe80") << DTypeName(dtype);
  }
}

TEST(QuantizeGolden, AllZeroTensorsAndRows) {
  // 130 x 130: every row zero except row 129, which holds 3.0 at column 129 (the
  // bottom-right edge block); row 1 is all -0.0.
  const size_t n = 130;
  std::vector<float> values(n * n, 0.0f);
  for (size_t c = 0; c < n; ++c) values[n + c] = -0.0f;
  values[n * n - 1] = 3.0f;
  for (DType dtype : kInputDTypes) {
    const std::vector<uint8_t> src = ExactBytes(dtype, values);
    std::vector<uint8_t> expected(n * n, 0x00);
    for (size_t c = 0; c < n; ++c) expected[n + c] = 0x80;
    expected[n * n - 1] = 0x7E;

    const Quantized per_tensor = QuantizeBoth(Scheme::kPerTensor, dtype, src, n, n);
    EXPECT_EQ(ScaleBytes(per_tensor.scales), "b76ddb3b");  // 3/448
    EXPECT_EQ(Hex(per_tensor.q), Hex(expected)) << DTypeName(dtype);

    const Quantized per_channel = QuantizeBoth(Scheme::kPerChannel, dtype, src, n, n);
    ASSERT_EQ(per_channel.scales.size(), n);
    for (size_t r = 0; r + 1 < n; ++r) EXPECT_EQ(std::bit_cast<uint32_t>(per_channel.scales[r]), 0x3F800000u) << r;
    EXPECT_EQ(ScaleBytes({per_channel.scales.back()}), "b76ddb3b");
    EXPECT_EQ(Hex(per_channel.q), Hex(expected)) << DTypeName(dtype);

    const Quantized block = QuantizeBoth(Scheme::kBlock, dtype, src, n, n);
    EXPECT_EQ(ScaleBytes(block.scales), "adac6f34" "adac6f34" "adac6f34" "b76ddb3b");  // floor x3, 3/448
    EXPECT_EQ(Hex(block.q), Hex(expected)) << DTypeName(dtype);
  }
}

TEST(QuantizeGolden, AllZeroTensorIsScaleOneForPerTensorAndPerChannel) {
  for (DType dtype : kInputDTypes) {
    const std::vector<uint8_t> zeros = ExactBytes(dtype, {0.0f, -0.0f, 0.0f, -0.0f});
    EXPECT_EQ(ScaleBytes(QuantizeBoth(Scheme::kPerTensor, dtype, zeros, 2, 2).scales), "0000803f");
    EXPECT_EQ(ScaleBytes(QuantizeBoth(Scheme::kPerChannel, dtype, zeros, 2, 2).scales), "0000803f" "0000803f");
    const Quantized block = QuantizeBoth(Scheme::kBlock, dtype, zeros, 2, 2);
    EXPECT_EQ(ScaleBytes(block.scales), "adac6f34");
    EXPECT_EQ(Hex(block.q), "00800080");
  }
}

TEST(QuantizeGolden, SaturatePolicyMapsNaNAndInfToPlusMinus448) {
  const float inf = INFINITY;
  const std::vector<float> values = {NAN, inf, -inf, 1.0f, -2.0f, 0.0f};
  for (DType dtype : kInputDTypes) {
    const std::vector<uint8_t> src = ExactBytes(dtype, values);
    for (Scheme scheme : kSchemes) {
      const Quantized out = QuantizeBoth(scheme, dtype, src, 2, 3, NonFinitePolicy::kSaturate);
      // Non-finite values are left out of amax: 2 for row 1 and the whole tensor,
      // 0 (scale 1) for per-channel row 0; NaN and +Inf give +448, -Inf -448 in every case.
      EXPECT_EQ(Hex(out.q), "7e7efe76fe00") << Label(scheme, dtype);
    }
  }
}

}  // namespace
}  // namespace weightd::kernels
