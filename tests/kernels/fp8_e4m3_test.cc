// EncodeE4M3 / DecodeE4M3 (and the inline fp8:: functions behind them) against an
// independent reference: the 256 E4M3FN values listed from the format's definition,
// and round-to-nearest-even done in double arithmetic by searching that list.
#include "kernels/fp8_e4m3.h"

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/quantize.h"

namespace weightd::kernels {
namespace {

// Value of code q by the E4M3FN definition (bias 7, no infinities, S.1111.111 NaN).
double RefDecode(uint8_t q) {
  const int sign = (q & 0x80) ? -1 : 1;
  const int e = (q >> 3) & 0xF;
  const int m = q & 7;
  if (e == 15 && m == 7) return std::numeric_limits<double>::quiet_NaN();
  if (e == 0) return sign * std::ldexp(m, -9);
  return sign * std::ldexp(8 + m, e - 10);
}

// Nearest E4M3 code by exhaustive search, ties to the even mantissa; |x| > 448
// saturates, NaN -> 0x7F; the sign of x (zero included) is kept.
uint8_t RefEncode(float xf) {
  if (std::isnan(xf)) return 0x7F;
  const double x = xf;
  const uint8_t sign = std::signbit(xf) ? 0x80 : 0x00;
  const double a = std::fabs(x);
  if (a >= 448.0) return sign | 0x7E;
  uint8_t best = 0;
  double best_err = std::numeric_limits<double>::infinity();
  for (int q = 0; q <= 0x7E; ++q) {
    const double err = std::fabs(RefDecode(static_cast<uint8_t>(q)) - a);
    if (err < best_err || (err == best_err && (q & 1) == 0)) {
      best = static_cast<uint8_t>(q);
      best_err = err;
    }
  }
  return sign | best;
}

float Bits(uint32_t b) { return std::bit_cast<float>(b); }
uint32_t BitsOf(float f) { return std::bit_cast<uint32_t>(f); }

TEST(DecodeE4M3, AllCodesMatchTheDefinition) {
  for (int q = 0; q < 256; ++q) {
    const float d = DecodeE4M3(static_cast<uint8_t>(q));
    const double ref = RefDecode(static_cast<uint8_t>(q));
    if (std::isnan(ref)) {
      EXPECT_TRUE(std::isnan(d)) << q;
      EXPECT_EQ(std::signbit(d), (q & 0x80) != 0) << q;
      continue;
    }
    EXPECT_EQ(static_cast<double>(d), ref) << q;
    EXPECT_EQ(std::signbit(d), (q & 0x80) != 0) << q;  // 0x80 is -0.0
  }
  EXPECT_EQ(BitsOf(DecodeE4M3(0x80)), 0x80000000u);
  EXPECT_EQ(DecodeE4M3(0x7E), 448.0f);
  EXPECT_EQ(DecodeE4M3(0xFE), -448.0f);
  EXPECT_EQ(DecodeE4M3(0x01), 0x1p-9f);
  EXPECT_EQ(DecodeE4M3(0x07), 7 * 0x1p-9f);
  EXPECT_EQ(DecodeE4M3(0x08), 0x1p-6f);
}

TEST(EncodeE4M3, RoundTripsEveryCode) {
  for (int q = 0; q < 256; ++q) {
    const uint8_t expected = (q & 0x7F) == 0x7F ? 0x7F : static_cast<uint8_t>(q);  // NaN -> 0x7F
    EXPECT_EQ(EncodeE4M3(DecodeE4M3(static_cast<uint8_t>(q))), expected) << q;
  }
}

TEST(EncodeE4M3, AllBf16PatternsMatchTheReference) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const float x = Bits(b << 16);
    ASSERT_EQ(EncodeE4M3(x), RefEncode(x)) << std::hex << "bf16 0x" << b;
  }
}

TEST(EncodeE4M3, MidpointsAndTheirNeighbours) {
  // Every pair of neighbouring finite values, and beyond 448 the would-be next
  // value 480 (saturation, not rounding, decides there).
  std::vector<double> values;
  for (int q = 0; q <= 0x7E; ++q) values.push_back(RefDecode(static_cast<uint8_t>(q)));
  values.push_back(480.0);
  int checked = 0;
  for (size_t i = 0; i + 1 < values.size(); ++i) {
    const float mid = static_cast<float>((values[i] + values[i + 1]) / 2);
    ASSERT_EQ(static_cast<double>(mid), (values[i] + values[i + 1]) / 2);  // exact in fp32
    for (float sign : {1.0f, -1.0f}) {
      for (int ulps = -3; ulps <= 3; ++ulps) {
        const float x = sign * Bits(BitsOf(mid) + ulps);
        ASSERT_EQ(EncodeE4M3(x), RefEncode(x)) << x;
        ++checked;
      }
      // The endpoints and their fp32 neighbours too.
      for (double v : {values[i], values[i + 1]}) {
        if (v == 0) continue;
        for (int ulps = -1; ulps <= 1; ++ulps) {
          const float x = sign * Bits(BitsOf(static_cast<float>(v)) + ulps);
          ASSERT_EQ(EncodeE4M3(x), RefEncode(x)) << x;
        }
      }
      // A tie goes to the even code, the one above goes up, the one below goes down.
      const uint8_t lower = static_cast<uint8_t>(i), upper = static_cast<uint8_t>(std::min<size_t>(i + 1, 0x7E));
      const uint8_t s = sign < 0 ? 0x80 : 0;
      EXPECT_EQ(EncodeE4M3(sign * mid), s | ((lower & 1) ? upper : lower)) << mid;
      EXPECT_EQ(EncodeE4M3(sign * Bits(BitsOf(mid) + 1)), s | upper) << mid;
      EXPECT_EQ(EncodeE4M3(sign * Bits(BitsOf(mid) - 1)), s | lower) << mid;
    }
  }
  EXPECT_EQ(checked, 127 * 2 * 7);
}

TEST(EncodeE4M3, SubnormalBoundaries) {
  EXPECT_EQ(EncodeE4M3(0x1p-9f), 0x01);
  EXPECT_EQ(EncodeE4M3(-0x1p-9f), 0x81);
  // 2^-10 is half the smallest subnormal: a tie, to the even code 0.
  EXPECT_EQ(EncodeE4M3(0x1p-10f), 0x00);
  EXPECT_EQ(EncodeE4M3(-0x1p-10f), 0x80);
  EXPECT_EQ(EncodeE4M3(Bits(BitsOf(0x1p-10f) + 1)), 0x01);
  EXPECT_EQ(EncodeE4M3(Bits(BitsOf(0x1p-10f) - 1)), 0x00);
  // 3 * 2^-10 = 1.5 * 2^-9: a tie between codes 1 and 2, to the even 2 (2^-8).
  EXPECT_EQ(EncodeE4M3(3 * 0x1p-10f), 0x02);
  EXPECT_EQ(DecodeE4M3(0x02), 0x1p-8f);
  // 5 * 2^-10 = 2.5 * 2^-9: between 2 and 3, to 2.
  EXPECT_EQ(EncodeE4M3(5 * 0x1p-10f), 0x02);
  // 15 * 2^-10 = 7.5 * 2^-9: between 7 (largest subnormal) and 8 (smallest normal), to 8.
  EXPECT_EQ(EncodeE4M3(15 * 0x1p-10f), 0x08);
  EXPECT_EQ(EncodeE4M3(Bits(BitsOf(15 * 0x1p-10f) - 1)), 0x07);
  // Largest subnormal, smallest normal.
  EXPECT_EQ(EncodeE4M3(7 * 0x1p-9f), 0x07);
  EXPECT_EQ(EncodeE4M3(0x1p-6f), 0x08);
  EXPECT_EQ(EncodeE4M3(Bits(BitsOf(0x1p-6f) - 1)), 0x08);
  // fp32 subnormals and tiny normals are zero of their sign.
  EXPECT_EQ(EncodeE4M3(std::numeric_limits<float>::denorm_min()), 0x00);
  EXPECT_EQ(EncodeE4M3(-std::numeric_limits<float>::denorm_min()), 0x80);
  EXPECT_EQ(EncodeE4M3(std::numeric_limits<float>::min()), 0x00);
  EXPECT_EQ(EncodeE4M3(0x1p-11f), 0x00);
  EXPECT_EQ(EncodeE4M3(-0x1.fffffep-11f), 0x80);
}

TEST(EncodeE4M3, ZerosSaturationAndNaN) {
  EXPECT_EQ(EncodeE4M3(0.0f), 0x00);
  EXPECT_EQ(EncodeE4M3(-0.0f), 0x80);
  EXPECT_EQ(EncodeE4M3(448.0f), 0x7E);
  EXPECT_EQ(EncodeE4M3(-448.0f), 0xFE);
  EXPECT_EQ(EncodeE4M3(449.0f), 0x7E);
  EXPECT_EQ(EncodeE4M3(464.0f), 0x7E);  // the midpoint to the 480 that E4M3FN lacks
  EXPECT_EQ(EncodeE4M3(480.0f), 0x7E);
  EXPECT_EQ(EncodeE4M3(-1e30f), 0xFE);
  EXPECT_EQ(EncodeE4M3(std::numeric_limits<float>::max()), 0x7E);
  EXPECT_EQ(EncodeE4M3(std::numeric_limits<float>::infinity()), 0x7E);
  EXPECT_EQ(EncodeE4M3(-std::numeric_limits<float>::infinity()), 0xFE);
  EXPECT_EQ(EncodeE4M3(std::numeric_limits<float>::quiet_NaN()), 0x7F);
  EXPECT_EQ(EncodeE4M3(-std::numeric_limits<float>::quiet_NaN()), 0x7F);
  EXPECT_EQ(EncodeE4M3(std::numeric_limits<float>::signaling_NaN()), 0x7F);
  EXPECT_EQ(EncodeE4M3(Bits(0x7F800001u)), 0x7F);
  EXPECT_EQ(EncodeE4M3(Bits(0xFFFFFFFFu)), 0x7F);
  // Below 448 rounding stays in range: 432 is the 416/448 midpoint -> 448 (even mantissa 6).
  EXPECT_EQ(EncodeE4M3(432.0f), 0x7E);
  EXPECT_EQ(EncodeE4M3(Bits(BitsOf(432.0f) - 1)), 0x7D);
}

TEST(EncodeE4M3, StrideOverAllFloatPatterns) {
  // Not all 2^32 (too slow against the search reference): a stride that is prime,
  // so it visits every exponent with varied mantissas, plus every pattern in the
  // range where E4M3 is finite and non-zero at a finer stride.
  for (uint64_t b = 0; b < (1ull << 32); b += 65521) {
    const float x = Bits(static_cast<uint32_t>(b));
    ASSERT_EQ(EncodeE4M3(x), RefEncode(x)) << std::hex << b;
  }
  for (uint32_t b = BitsOf(0x1p-11f); b <= BitsOf(500.0f); b += 257) {
    ASSERT_EQ(EncodeE4M3(Bits(b)), RefEncode(Bits(b))) << std::hex << b;
  }
}

TEST(Fp8Constexpr, UsableAtCompileTime) {
  static_assert(fp8::E4M3FromFloat(1.0f) == 0x38);
  static_assert(fp8::E4M3FromFloat(-2.0f) == 0xC0);
  static_assert(fp8::FloatFromE4M3(0x38) == 1.0f);
  static_assert(fp8::FloatFromE4M3(0x7E) == 448.0f);
  EXPECT_EQ(fp8::E4M3FromFloat(0.5f), EncodeE4M3(0.5f));
}

}  // namespace
}  // namespace weightd::kernels
