// Branch-free per-element pieces of the fast CPU kernels: widening loads that
// produce fp32 bit patterns, and the scale-clamp-encode step, written with
// selects instead of branches so that loops over them vectorize. Every function
// gives exactly the bits of its scalar counterpart (float_convert.h, fp8_e4m3.h,
// QuantizeOne in quantize_ref.cc); tests/kernels/quantize_fast_test.cc checks it.
// They rely on IEEE fp32 with round-to-nearest-even and no flush-to-zero, which
// is the default floating-point environment (the build forbids fast-math).
//
// Thread-safety: pure functions.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace weightd::kernels::fast {

inline uint16_t Load16(const uint8_t* src, size_t i) {
  uint16_t v;
  std::memcpy(&v, src + 2 * i, 2);
  return v;
}

inline uint32_t Load32(const uint8_t* src, size_t i) {
  uint32_t v;
  std::memcpy(&v, src + 4 * i, 4);
  return v;
}

// All-ones when magnitude >= bound, else 0. Signed compares on magnitudes (< 2^31)
// are what SSE2 has; a mask rather than a bool keeps the selects branch-free.
inline uint32_t AtLeastMask(uint32_t magnitude, uint32_t bound) {
  return static_cast<uint32_t>(-static_cast<int32_t>(static_cast<int32_t>(magnitude) >= static_cast<int32_t>(bound)));
}

inline uint32_t Select(uint32_t mask, uint32_t if_set, uint32_t otherwise) {
  return (if_set & mask) | (otherwise & ~mask);
}

// BF16 is the upper half of an fp32.
inline uint32_t Bf16Bits(const uint8_t* src, size_t i) { return static_cast<uint32_t>(Load16(src, i)) << 16; }

// binary16 -> binary32 bits. The magnitude shifted into fp32 position, read as a
// float and scaled by 2^112, is the exact value for normals and subnormals alike
// (a power-of-two scale of a value that ends up normal loses nothing); Inf and
// NaN keep their mantissa under an all-ones exponent.
inline uint32_t HalfBits(const uint8_t* src, size_t i) {
  const uint32_t h = Load16(src, i);
  const uint32_t shifted = (h & 0x7FFFu) << 13;
  const uint32_t scaled = std::bit_cast<uint32_t>(std::bit_cast<float>(shifted) * 0x1p112f);
  const uint32_t magnitude = Select(AtLeastMask(shifted, 0x0F800000u), shifted | 0x7F800000u, scaled);
  return magnitude | ((h & 0x8000u) << 16);
}

inline uint32_t F32Bits(const uint8_t* src, size_t i) { return Load32(src, i); }

// The E4M3FN code of x (fp32 bits) scaled by inv: QuantizeOne of quantize_ref.cc.
// NaN x -> 0x7E; y = x * inv NaN (only 0 * Inf) -> zero of x's sign; |y| >= 448
// (Inf too) -> +-448; normals by dropping 20 mantissa bits with RNE; subnormals
// (|y| < 2^-6) as y * 2^9 rounded to an integer k by adding 2^23 (RNE), code k.
inline uint8_t EncodeScaled(uint32_t x_bits, float inv) {
  const float y = std::bit_cast<float>(x_bits) * inv;
  const uint32_t y_mag = std::bit_cast<uint32_t>(y) & 0x7FFFFFFFu;
  const uint32_t x_mag = x_bits & 0x7FFFFFFFu;
  const uint32_t sign = (x_bits >> 24) & 0x80u;
  // Saturation as an unsigned minimum on the magnitude's bits (one instruction,
  // vpminud): 448 and above, Inf and NaN become 448, whose rounding below is 0x7E.
  const uint32_t clamped = y_mag < 0x43E00000u ? y_mag : 0x43E00000u;
  const uint32_t normal = ((clamped + 0x7FFFFu + ((clamped >> 20) & 1u)) >> 20) - (120u << 3);
  const uint32_t subnormal =
      std::bit_cast<uint32_t>(std::bit_cast<float>(clamped) * 512.0f + 8388608.0f) - 0x4B000000u;
  uint32_t code = Select(AtLeastMask(clamped, 0x3C800000u), normal, subnormal) | sign;
  code = Select(AtLeastMask(y_mag, 0x7F800001u), sign, code);
  code = Select(AtLeastMask(x_mag, 0x7F800001u), 0x7Eu, code);
  return static_cast<uint8_t>(code);
}

}  // namespace weightd::kernels::fast
