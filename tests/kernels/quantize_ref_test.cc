// The CPU reference kernels (kernels/quantize.h) against the formula of DESIGN.md
// "Quantization semantics", written out again here in plain fp32 arithmetic:
//   s = fp32(amax / 448) (block: amax floored at fp32(1e-4); amax == 0 -> 1.0),
//   inv = fp32(1 / s), y = clamp(fp32(x * inv), -448, 448), q = e4m3fn_rne(y).
// e4m3fn_rne is checked against an independent reference in fp8_e4m3_test.cc, so it is
// used here as the formula's last step.
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/dtype.h"
#include "kernels/quantize.h"
#include "tests/kernels/tensor_bytes.h"

namespace weightd::kernels {
namespace {

using ::testing::HasSubstr;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Element encodings written independently of kernels/float_convert.h.
uint16_t Bf16BitsRne(float f) {
  uint32_t b = std::bit_cast<uint32_t>(f);
  if (std::isnan(f)) return static_cast<uint16_t>((b >> 16) | 0x40);
  b += 0x7FFF + ((b >> 16) & 1);
  return static_cast<uint16_t>(b >> 16);
}

// A tensor in one dtype: its bytes and the fp32 value of each element.
struct Tensor {
  DType dtype;
  std::vector<uint8_t> bytes;
  std::vector<float> values;
};

// n pseudo-random elements of `dtype`, with specials sprinkled in when `specials`.
Tensor MakeTensor(DType dtype, size_t n, uint32_t seed, float magnitude, bool specials) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uni(-magnitude, magnitude);
  Tensor t{dtype, std::vector<uint8_t>(n * DTypeSize(dtype)), std::vector<float>(n)};
  for (size_t i = 0; i < n; ++i) {
    float v = uni(rng);
    if (specials) {
      switch (i % 11) {
        case 3: v = -0.0f; break;
        case 5: v = 0.0f; break;
        case 7: v = v * 1e-6f; break;  // far below a step: rounds to zero
        default: break;
      }
    }
    switch (dtype) {
      case DType::kBF16: {
        uint16_t h = Bf16BitsRne(v);
        std::memcpy(&t.bytes[2 * i], &h, 2);
        t.values[i] = std::bit_cast<float>(static_cast<uint32_t>(h) << 16);
        break;
      }
      case DType::kF16: {
        // Any half pattern that is finite and within `magnitude`.
        uint16_t h;
        do {
          h = static_cast<uint16_t>(rng());
        } while (!std::isfinite(HalfValue(h)) || std::fabs(HalfValue(h)) > magnitude);
        if (specials && i % 11 == 3) h = 0x8000;
        if (specials && i % 11 == 5) h = 0x0000;
        std::memcpy(&t.bytes[2 * i], &h, 2);
        t.values[i] = static_cast<float>(HalfValue(h));
        break;
      }
      case DType::kF32:
        std::memcpy(&t.bytes[4 * i], &v, 4);
        t.values[i] = v;
        break;
      case DType::kF8E4M3: {
        uint8_t q = static_cast<uint8_t>(rng());
        if ((q & 0x7F) == 0x7F) q = 0x7E;
        t.bytes[i] = q;
        t.values[i] = DecodeE4M3(q);
        break;
      }
      default: ADD_FAILURE() << "not a quantizable dtype";
    }
  }
  return t;
}

float FormulaAmax(const std::vector<float>& values) {
  float m = 0;
  for (float v : values) {
    if (std::isfinite(v)) m = std::max(m, std::fabs(v));
  }
  return m;
}

float FormulaScale(float amax) { return amax == 0.0f ? 1.0f : amax / 448.0f; }

uint8_t FormulaQuantize(float x, float scale) {
  if (std::isnan(x)) return 0x7E;  // the documented saturation of NaN inputs
  const float inv = 1.0f / scale;
  float y = x * inv;
  if (std::isnan(y)) return std::signbit(x) ? 0x80 : 0x00;  // 0 * Inf: a zero keeps its zero
  y = std::min(std::max(y, -448.0f), 448.0f);
  return EncodeE4M3(y);
}

TEST(ScaleFromAmax, Rules) {
  EXPECT_EQ(ScaleFromAmax(0.0f), 1.0f);
  EXPECT_EQ(ScaleFromAmax(-0.0f), 1.0f);
  EXPECT_EQ(ScaleFromAmax(448.0f), 1.0f);
  EXPECT_EQ(ScaleFromAmax(1.0f), 1.0f / 448.0f);
  EXPECT_EQ(ScaleFromAmax(3.5f), 3.5f / 448.0f);
  EXPECT_EQ(ScaleFromAmax(1e-30f), 1e-30f / 448.0f);  // tiny, no floor per tensor
  for (float a : {1e-4f, 0.1f, 0.3f, 7.0f, 1000.0f, 65504.0f, 3e38f}) {
    EXPECT_EQ(std::bit_cast<uint32_t>(ScaleFromAmax(a)), std::bit_cast<uint32_t>(a / 448.0f)) << a;
  }
}

TEST(BlockScaleFromAmax, FloorsAt1em4) {
  const float floor_scale = 1e-4f / 448.0f;
  EXPECT_EQ(BlockScaleFromAmax(0.0f), floor_scale);
  EXPECT_GT(BlockScaleFromAmax(0.0f), 0.0f);
  EXPECT_EQ(BlockScaleFromAmax(1e-9f), floor_scale);
  EXPECT_EQ(BlockScaleFromAmax(std::nextafter(1e-4f, 0.0f)), floor_scale);
  EXPECT_EQ(BlockScaleFromAmax(1e-4f), floor_scale);
  EXPECT_EQ(BlockScaleFromAmax(std::nextafter(1e-4f, 1.0f)), std::nextafter(1e-4f, 1.0f) / 448.0f);
  EXPECT_EQ(BlockScaleFromAmax(2.0f), 2.0f / 448.0f);
  EXPECT_EQ(BlockScaleFromAmax(448.0f), 1.0f);
}

TEST(AbsMax, FiniteValues) {
  for (DType dtype : {DType::kBF16, DType::kF16, DType::kF32, DType::kF8E4M3}) {
    for (size_t n : {size_t{1}, size_t{7}, size_t{4097}}) {
      Tensor t = MakeTensor(dtype, n, static_cast<uint32_t>(n) * 31 + static_cast<uint32_t>(dtype), 300.0f, true);
      for (NonFinitePolicy p : {NonFinitePolicy::kFail, NonFinitePolicy::kSaturate}) {
        absl::StatusOr<float> amax = AbsMax(dtype, t.bytes.data(), n, p);
        ASSERT_TRUE(amax.ok()) << amax.status();
        EXPECT_EQ(std::bit_cast<uint32_t>(*amax), std::bit_cast<uint32_t>(FormulaAmax(t.values)))
            << DTypeName(dtype) << " " << n;
      }
    }
  }
  absl::StatusOr<float> empty = AbsMax(DType::kF32, nullptr, 0, NonFinitePolicy::kFail);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, 0.0f);
  const float negzero[] = {-0.0f, -0.0f};
  absl::StatusOr<float> z = AbsMax(DType::kF32, negzero, 2, NonFinitePolicy::kFail);
  ASSERT_TRUE(z.ok());
  EXPECT_EQ(std::bit_cast<uint32_t>(*z), 0u);  // +0.0, so the scale rule sees zero
}

TEST(AbsMax, NonFinitePolicy) {
  const float values[] = {1.0f, -3.0f, kNaN, 2.0f, -kInf, kInf, 0.5f};
  absl::StatusOr<float> fail = AbsMax(DType::kF32, values, 7, NonFinitePolicy::kFail);
  ASSERT_FALSE(fail.ok());
  EXPECT_EQ(fail.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(fail.status().message()), HasSubstr("non-finite value at element 2"));
  absl::StatusOr<float> sat = AbsMax(DType::kF32, values, 7, NonFinitePolicy::kSaturate);
  ASSERT_TRUE(sat.ok());
  EXPECT_EQ(*sat, 3.0f);
  // Element index of the first non-finite value, for each dtype.
  const uint16_t bf16[] = {0x3F80, 0x0000, 0xFF80};  // 1, 0, -Inf
  fail = AbsMax(DType::kBF16, bf16, 3, NonFinitePolicy::kFail);
  EXPECT_THAT(std::string(fail.status().message()), HasSubstr("non-finite value at element 2"));
  const uint16_t f16[] = {0x3C00, 0x7E00};  // 1, NaN
  fail = AbsMax(DType::kF16, f16, 2, NonFinitePolicy::kFail);
  EXPECT_THAT(std::string(fail.status().message()), HasSubstr("non-finite value at element 1"));
  const uint16_t f16inf[] = {0x7C00};
  fail = AbsMax(DType::kF16, f16inf, 1, NonFinitePolicy::kFail);
  EXPECT_THAT(std::string(fail.status().message()), HasSubstr("non-finite value at element 0"));
  const uint8_t fp8[] = {0x38, 0x7E, 0x01, 0xFF};  // 1, 448, 2^-9, NaN
  fail = AbsMax(DType::kF8E4M3, fp8, 4, NonFinitePolicy::kFail);
  EXPECT_THAT(std::string(fail.status().message()), HasSubstr("non-finite value at element 3"));
  sat = AbsMax(DType::kF8E4M3, fp8, 4, NonFinitePolicy::kSaturate);
  ASSERT_TRUE(sat.ok());
  EXPECT_EQ(*sat, 448.0f);
  // Only non-finite values: the maximum of nothing is 0.
  const float all_bad[] = {kNaN, -kInf};
  sat = AbsMax(DType::kF32, all_bad, 2, NonFinitePolicy::kSaturate);
  ASSERT_TRUE(sat.ok());
  EXPECT_EQ(*sat, 0.0f);
  // The largest finite fp32 is finite.
  const float big[] = {-std::numeric_limits<float>::max()};
  sat = AbsMax(DType::kF32, big, 1, NonFinitePolicy::kFail);
  ASSERT_TRUE(sat.ok());
  EXPECT_EQ(*sat, std::numeric_limits<float>::max());
}

TEST(QuantizeE4M3, MatchesTheFormulaOnAwkwardSizes) {
  for (DType dtype : {DType::kBF16, DType::kF16, DType::kF32, DType::kF8E4M3}) {
    for (size_t n : {size_t{1}, size_t{7}, size_t{4097}}) {
      for (float magnitude : {1e-3f, 1.0f, 300.0f, 60000.0f}) {
        Tensor t = MakeTensor(dtype, n, static_cast<uint32_t>(n * 7 + static_cast<size_t>(dtype)), magnitude, true);
        const float amax = FormulaAmax(t.values);
        absl::StatusOr<float> kernel_amax = AbsMax(dtype, t.bytes.data(), n, NonFinitePolicy::kFail);
        ASSERT_TRUE(kernel_amax.ok());
        ASSERT_EQ(*kernel_amax, amax);
        ASSERT_EQ(ScaleFromAmax(amax), FormulaScale(amax));
        for (float scale : {ScaleFromAmax(amax), BlockScaleFromAmax(amax), 1.0f, 0.37f}) {
          std::vector<uint8_t> expected(n), got(n + 1, 0xAB);
          for (size_t i = 0; i < n; ++i) expected[i] = FormulaQuantize(t.values[i], scale);
          QuantizeE4M3(dtype, t.bytes.data(), n, scale, NonFinitePolicy::kFail, got.data());
          EXPECT_EQ(got[n], 0xAB) << "wrote past n";
          got.resize(n);
          ASSERT_EQ(got, expected) << DTypeName(dtype) << " n=" << n << " magnitude=" << magnitude << " scale=" << scale;
        }
      }
    }
  }
}

TEST(QuantizeE4M3, UnalignedSource) {
  // Elements at an odd address: the kernels load with memcpy.
  Tensor t = MakeTensor(DType::kF32, 7, 99, 10.0f, false);
  std::vector<uint8_t> shifted(1 + t.bytes.size());
  std::memcpy(shifted.data() + 1, t.bytes.data(), t.bytes.size());
  const float scale = ScaleFromAmax(FormulaAmax(t.values));
  std::vector<uint8_t> a(7), b(7);
  QuantizeE4M3(DType::kF32, t.bytes.data(), 7, scale, NonFinitePolicy::kFail, a.data());
  QuantizeE4M3(DType::kF32, shifted.data() + 1, 7, scale, NonFinitePolicy::kFail, b.data());
  EXPECT_EQ(a, b);
  absl::StatusOr<float> amax = AbsMax(DType::kF32, shifted.data() + 1, 7, NonFinitePolicy::kFail);
  ASSERT_TRUE(amax.ok());
  EXPECT_EQ(*amax, FormulaAmax(t.values));
}

TEST(QuantizeE4M3, ZeroTensorGivesSignedZeros) {
  const float zeros[] = {0.0f, -0.0f, 0.0f, -0.0f, -0.0f};
  absl::StatusOr<float> amax = AbsMax(DType::kF32, zeros, 5, NonFinitePolicy::kFail);
  ASSERT_TRUE(amax.ok());
  const float scale = ScaleFromAmax(*amax);
  EXPECT_EQ(scale, 1.0f);
  uint8_t q[5];
  QuantizeE4M3(DType::kF32, zeros, 5, scale, NonFinitePolicy::kFail, q);
  EXPECT_THAT(q, ::testing::ElementsAre(0x00, 0x80, 0x00, 0x80, 0x80));
  const uint16_t bf16[] = {0x8000, 0x0000};
  QuantizeE4M3(DType::kBF16, bf16, 2, 1.0f, NonFinitePolicy::kFail, q);
  EXPECT_EQ(q[0], 0x80);
  EXPECT_EQ(q[1], 0x00);
  const uint16_t f16[] = {0x8000};
  QuantizeE4M3(DType::kF16, f16, 1, 1.0f, NonFinitePolicy::kFail, q);
  EXPECT_EQ(q[0], 0x80);
  // The block scheme's floor on an all-zero block also gives signed zeros.
  QuantizeE4M3(DType::kF32, zeros, 2, BlockScaleFromAmax(0.0f), NonFinitePolicy::kFail, q);
  EXPECT_EQ(q[0], 0x00);
  EXPECT_EQ(q[1], 0x80);
}

TEST(QuantizeE4M3, SaturationAndNonFiniteInputs) {
  const float x[] = {448.0f, -448.0f, 1000.0f, -1000.0f, kInf, -kInf, kNaN, -kNaN, 2.0f};
  for (NonFinitePolicy p : {NonFinitePolicy::kFail, NonFinitePolicy::kSaturate}) {
    uint8_t q[9];
    QuantizeE4M3(DType::kF32, x, 9, 1.0f, p, q);
    EXPECT_THAT(q, ::testing::ElementsAre(0x7E, 0xFE, 0x7E, 0xFE, 0x7E, 0xFE, 0x7E, 0x7E, 0x40));
  }
  // The amax element maps to exactly 448 and nothing exceeds it.
  const float v[] = {3.0f, -7.0f, 6.999f};
  uint8_t q[3];
  QuantizeE4M3(DType::kF32, v, 3, ScaleFromAmax(7.0f), NonFinitePolicy::kFail, q);
  EXPECT_EQ(q[1], 0xFE);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(q[i], FormulaQuantize(v[i], ScaleFromAmax(7.0f)));
  // A scale whose product overshoots 448 is clamped.
  const float w[] = {1.0f, -1.0f};
  QuantizeE4M3(DType::kF32, w, 2, 1.0f / 1000.0f, NonFinitePolicy::kFail, q);
  EXPECT_EQ(q[0], 0x7E);
  EXPECT_EQ(q[1], 0xFE);
}

TEST(QuantizeE4M3, ScaleSoSmallThatItsInverseOverflows) {
  // amax = 1e-38: s = amax/448 is a subnormal, 1/s = +Inf.
  const float amax = 1e-38f;
  const float scale = ScaleFromAmax(amax);
  ASSERT_TRUE(std::isinf(1.0f / scale));
  const float x[] = {0.0f, -0.0f, 1e-38f, -1e-38f, 1e-45f};
  uint8_t q[5];
  QuantizeE4M3(DType::kF32, x, 5, scale, NonFinitePolicy::kFail, q);
  EXPECT_THAT(q, ::testing::ElementsAre(0x00, 0x80, 0x7E, 0xFE, 0x7E));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(q[i], FormulaQuantize(x[i], scale)) << i;
}

TEST(QuantizeE4M3, EveryBf16PatternAtUnitScaleAndATypicalScale) {
  std::vector<uint16_t> all(65536);
  for (uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<uint16_t>(i);
  for (float scale : {1.0f, ScaleFromAmax(0.0625f), ScaleFromAmax(3.0e5f)}) {
    std::vector<uint8_t> got(65536);
    QuantizeE4M3(DType::kBF16, all.data(), all.size(), scale, NonFinitePolicy::kSaturate, got.data());
    for (uint32_t i = 0; i < 65536; ++i) {
      const float x = std::bit_cast<float>(i << 16);
      ASSERT_EQ(got[i], FormulaQuantize(x, scale)) << std::hex << i;
    }
  }
}

TEST(QuantizeE4M3, EveryF16PatternAtUnitScale) {
  std::vector<uint16_t> all(65536);
  for (uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<uint16_t>(i);
  std::vector<uint8_t> got(65536);
  QuantizeE4M3(DType::kF16, all.data(), all.size(), 1.0f, NonFinitePolicy::kSaturate, got.data());
  for (uint32_t i = 0; i < 65536; ++i) {
    const double v = HalfValue(static_cast<uint16_t>(i));
    ASSERT_EQ(got[i], FormulaQuantize(static_cast<float>(v), 1.0f)) << std::hex << i;
  }
}

TEST(QuantizeE4M3, Fp8SourceRequantizes) {
  std::vector<uint8_t> all(256);
  for (int i = 0; i < 256; ++i) all[i] = static_cast<uint8_t>(i);
  std::vector<uint8_t> got(256);
  QuantizeE4M3(DType::kF8E4M3, all.data(), 256, 1.0f, NonFinitePolicy::kSaturate, got.data());
  for (int i = 0; i < 256; ++i) {
    // Scale 1 is the identity, except NaN, which saturates like any NaN input.
    const uint8_t expected = (i & 0x7F) == 0x7F ? 0x7E : static_cast<uint8_t>(i);
    EXPECT_EQ(got[i], expected) << i;
  }
}

TEST(LoadAsFloat, EveryDType) {
  const uint16_t bf16[] = {0x3F80, 0xC040};
  EXPECT_EQ(LoadAsFloat(DType::kBF16, bf16, 1), -3.0f);
  const uint16_t f16[] = {0x3C00, 0x0001, 0xFBFF};
  EXPECT_EQ(LoadAsFloat(DType::kF16, f16, 1), 0x1p-24f);
  EXPECT_EQ(LoadAsFloat(DType::kF16, f16, 2), -65504.0f);
  const float f32[] = {1.5f, -2.25f};
  EXPECT_EQ(LoadAsFloat(DType::kF32, f32, 1), -2.25f);
  const uint8_t fp8[] = {0x00, 0xFE};
  EXPECT_EQ(LoadAsFloat(DType::kF8E4M3, fp8, 1), -448.0f);
}

}  // namespace
}  // namespace weightd::kernels
