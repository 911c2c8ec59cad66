// The non-temporal copies against memcpy and a scalar maximum: every byte at every
// alignment of source and destination, nothing written outside, and the largest
// magnitude found wherever it sits (the unaligned head, the 128-byte loop, the
// 32-byte loop, the tail).
#include "kernels/stream_copy.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"

namespace weightd::kernels {
namespace {

constexpr uint8_t kGuard = 0xCD;

std::vector<uint8_t> Pattern(size_t bytes, uint32_t seed) {
  std::vector<uint8_t> v(bytes);
  uint32_t x = seed;
  for (uint8_t& b : v) {
    x = x * 1664525u + 1013904223u;
    b = static_cast<uint8_t>(x >> 24) & 0x3F;  // small magnitudes: the planted maximum stands out
  }
  return v;
}

// Copies `src` to dst_shift bytes into a guarded buffer with `copy`; checks the
// bytes and the guards, and returns what `copy` returned.
template <typename Copy>
uint32_t CheckCopy(const std::vector<uint8_t>& src, size_t dst_shift, Copy copy) {
  std::vector<uint8_t> out(dst_shift + src.size() + 64, kGuard);
  const uint32_t max = copy(out.data() + dst_shift, src.data());
  EXPECT_TRUE(std::equal(src.begin(), src.end(), out.begin() + static_cast<ptrdiff_t>(dst_shift)))
      << src.size() << " bytes at shift " << dst_shift;
  EXPECT_EQ(std::count(out.begin(), out.begin() + static_cast<ptrdiff_t>(dst_shift), kGuard),
            static_cast<ptrdiff_t>(dst_shift));
  EXPECT_EQ(std::count(out.end() - 64, out.end(), kGuard), 64);
  return max;
}

TEST(StreamCopyTest, CopiesEveryByteAtEveryAlignment) {
  for (size_t bytes : {size_t{0}, size_t{1}, size_t{31}, size_t{32}, size_t{33}, size_t{127}, size_t{128},
                       size_t{129}, size_t{1000}, size_t{65537}}) {
    for (size_t src_shift = 0; src_shift < 4; ++src_shift) {
      const std::vector<uint8_t> padded = Pattern(bytes + src_shift, 7);
      const std::vector<uint8_t> src(padded.begin() + static_cast<ptrdiff_t>(src_shift), padded.end());
      for (size_t shift = 0; shift < 33; ++shift) {
        CheckCopy(src, shift, [&](uint8_t* d, const uint8_t* s) {
          StreamCopy(d, s, src.size());
          return 0u;
        });
      }
    }
  }
}

// The maximum planted at every position of 16- and 32-bit arrays long enough for
// each loop, with the sign bit set on it and on a larger negative neighbour's
// magnitude: only the sign-cleared pattern counts.
TEST(StreamCopyTest, FindsTheLargestMagnitudeWhereverItIs) {
  for (size_t n : {size_t{1}, size_t{15}, size_t{16}, size_t{17}, size_t{100}, size_t{301}}) {
    for (size_t at = 0; at < n; ++at) {
      for (size_t shift : {size_t{0}, size_t{2}, size_t{4}, size_t{6}, size_t{16}, size_t{30}}) {
        std::vector<uint16_t> v16(n, 0x8003);  // -small: magnitude 3
        v16[at] = 0xF000;                       // magnitude 0x7000
        std::vector<uint8_t> b16(n * 2);
        std::memcpy(b16.data(), v16.data(), b16.size());
        EXPECT_EQ(CheckCopy(b16, shift, [&](uint8_t* d, const uint8_t* s) { return uint32_t{StreamCopyMax16(d, s, n)}; }),
                  0x7000u)
            << "n=" << n << " at=" << at << " shift=" << shift;
        if (shift % 4 != 0) continue;
        std::vector<uint32_t> v32(n, 0x80000003u);
        v32[at] = 0xC0000000u;
        std::vector<uint8_t> b32(n * 4);
        std::memcpy(b32.data(), v32.data(), b32.size());
        EXPECT_EQ(CheckCopy(b32, shift, [&](uint8_t* d, const uint8_t* s) { return StreamCopyMax32(d, s, n); }),
                  0x40000000u)
            << "n=" << n << " at=" << at << " shift=" << shift;
      }
    }
  }
}

// A destination not aligned to the element takes ordinary stores: same bytes, and
// the maximum a scalar loop finds.
TEST(StreamCopyTest, ADestinationOffTheElementGridStillCopies) {
  std::vector<uint8_t> src = Pattern(4000, 3);
  src[1998] = 0xFF;
  src[1999] = 0x7F;  // 16-bit element 999, little-endian: 0x7FFF
  uint32_t max16 = 0, max32 = 0;
  for (size_t i = 0; i < src.size(); i += 4) {
    uint16_t a, b;
    uint32_t w;
    std::memcpy(&a, &src[i], 2);
    std::memcpy(&b, &src[i + 2], 2);
    std::memcpy(&w, &src[i], 4);
    max16 = std::max({max16, uint32_t{a & 0x7FFFu}, uint32_t{b & 0x7FFFu}});
    max32 = std::max(max32, w & 0x7FFFFFFFu);
  }
  ASSERT_EQ(max16, 0x7FFFu);
  for (size_t shift : {size_t{1}, size_t{3}}) {
    EXPECT_EQ(CheckCopy(src, shift, [&](uint8_t* d, const uint8_t* s) { return uint32_t{StreamCopyMax16(d, s, 2000)}; }),
              max16);
    EXPECT_EQ(CheckCopy(src, shift, [&](uint8_t* d, const uint8_t* s) { return StreamCopyMax32(d, s, 1000); }), max32);
  }
}

}  // namespace
}  // namespace weightd::kernels
