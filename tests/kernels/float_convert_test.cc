#include "kernels/float_convert.h"

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/dtype.h"
#include "kernels/quantize.h"
#include "tests/kernels/tensor_bytes.h"

namespace weightd::kernels {
namespace {

TEST(HalfBitsFromFloat, RoundsToNearestEvenLikeTheCompilersHalfType) {
  // Every binary16 value maps back to itself; midpoints between neighbours go to the even one.
  for (uint32_t i = 0; i < 0x7C00; ++i) {
    const uint16_t h = static_cast<uint16_t>(i);
    ASSERT_EQ(HalfBitsFromFloat(FloatFromHalfBits(h)), h) << std::hex << i;
    ASSERT_EQ(HalfBitsFromFloat(-FloatFromHalfBits(h)), h | 0x8000) << std::hex << i;
    const float mid = static_cast<float>((static_cast<double>(FloatFromHalfBits(h)) +
                                          static_cast<double>(FloatFromHalfBits(static_cast<uint16_t>(h + 1)))) / 2);
    if (i + 1 < 0x7C00) ASSERT_EQ(HalfBitsFromFloat(mid), (h & 1) ? h + 1 : h) << std::hex << i;
  }
  EXPECT_EQ(HalfBitsFromFloat(65519.0f), 0x7BFF);
  EXPECT_EQ(HalfBitsFromFloat(65520.0f), 0x7C00);
  EXPECT_EQ(HalfBitsFromFloat(-INFINITY), 0xFC00);
  EXPECT_EQ(HalfBitsFromFloat(0x1p-25f), 0x0000);  // half the smallest subnormal: tie to even zero
  EXPECT_EQ(HalfBitsFromFloat(0x1.8p-25f), 0x0001);
  EXPECT_EQ(HalfBitsFromFloat(NAN) & 0x7E00, 0x7E00);
#if defined(__FLT16_MAX__)
  uint32_t state = 12345;
  for (int n = 0; n < 1000000; ++n) {
    state = state * 1664525u + 1013904223u;
    const float f = std::bit_cast<float>(state & 0xC7FFFFFFu);  // magnitudes up to ~2^17
    if (std::isnan(f)) continue;
    const _Float16 h = static_cast<_Float16>(f);
    ASSERT_EQ(HalfBitsFromFloat(f), std::bit_cast<uint16_t>(h)) << f;
  }
#endif
}

TEST(FloatFromHalfBits, EveryPattern) {
  for (uint32_t i = 0; i < 65536; ++i) {
    const uint16_t h = static_cast<uint16_t>(i);
    const float f = FloatFromHalfBits(h);
    const uint32_t bits = std::bit_cast<uint32_t>(f);
    EXPECT_EQ(bits >> 31, i >> 15) << std::hex << i;  // sign, -0.0 and NaN included
    const double ref = HalfValue(h);
    if (std::isnan(ref)) {
      ASSERT_TRUE(std::isnan(f)) << std::hex << i;
      EXPECT_EQ((bits >> 13) & 0x3FF, i & 0x3FFu) << "NaN payload kept, " << std::hex << i;
      EXPECT_EQ(bits & 0x1FFF, 0u);
    } else {
      ASSERT_EQ(static_cast<double>(f), ref) << std::hex << i;
    }
  }
}

TEST(FloatFromBf16Bits, EveryPattern) {
  for (uint32_t i = 0; i < 65536; ++i) {
    ASSERT_EQ(std::bit_cast<uint32_t>(FloatFromBf16Bits(static_cast<uint16_t>(i))), i << 16);
  }
}

TEST(Loaders, LittleEndianAndUnaligned) {
  const uint8_t bytes[] = {0xAA, 0x00, 0x00, 0xC0, 0x3F, 0x00, 0x3C, 0x80, 0x3F};
  // F32 1.5 at byte 1..4 (index 0 of bytes + 1).
  EXPECT_EQ(F32Loader{}(bytes + 1, 0), 1.5f);
  EXPECT_EQ(F16Loader{}(bytes + 5, 0), 1.0f);    // 0x3C00
  EXPECT_EQ(Bf16Loader{}(bytes + 7, 0), 1.0f);   // 0x3F80
  EXPECT_EQ(E4M3Loader{}(bytes, 0), DecodeE4M3(0xAA));
  EXPECT_EQ(LoadLittleEndian<uint16_t>(bytes + 1, 2), 0x3C00);
  EXPECT_EQ(ZeroLoader{}(nullptr, 5), 0.0f);
}

TEST(WithLoader, PicksTheDTypesLoader) {
  const uint16_t h[] = {0x4000};  // 2.0 both as F16 and as BF16
  EXPECT_EQ(WithLoader(DType::kF16, [&](auto load) { return load(h, 0); }), 2.0f);
  EXPECT_EQ(WithLoader(DType::kBF16, [&](auto load) { return load(h, 0); }), 2.0f);
  const uint16_t h2[] = {0x3C00};
  EXPECT_EQ(WithLoader(DType::kF16, [&](auto load) { return load(h2, 0); }), 1.0f);
  EXPECT_EQ(WithLoader(DType::kBF16, [&](auto load) { return load(h2, 0); }), 0x1p-7f);
  for (int q = 0; q < 256; ++q) {
    const uint8_t b = static_cast<uint8_t>(q);
    const float a = LoadAsFloat(DType::kF8E4M3, &b, 0);
    const float d = DecodeE4M3(b);
    EXPECT_EQ(std::bit_cast<uint32_t>(a), std::bit_cast<uint32_t>(d)) << q;
  }
}

}  // namespace
}  // namespace weightd::kernels
