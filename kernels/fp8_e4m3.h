// Bit-exact FP8 E4M3FN encode/decode on fp32 bit patterns, inline so that the
// per-element loops of the CPU kernels compile to straight-line integer code.
// The public entry points are EncodeE4M3 / DecodeE4M3 in kernels/quantize.h.
//
// Thread-safety: pure functions.
#pragma once

#include <bit>
#include <cstdint>

namespace weightd::kernels::fp8 {

inline constexpr uint8_t kE4M3MaxCode = 0x7E;  // 448
inline constexpr uint8_t kE4M3NaNCode = 0x7F;

inline constexpr uint32_t kF32Max448Bits = 0x43E00000u;     // 448.0f
inline constexpr uint32_t kF32MinNormalBits = 0x3C800000u;  // 2^-6, E4M3's smallest normal

// Round to nearest, ties to even, of the fp32 value itself (no double rounding).
// Magnitudes >= 448 (Inf included) saturate to 0x7E; every NaN gives 0x7F.
constexpr uint8_t E4M3FromFloat(float y) {
  const uint32_t bits = std::bit_cast<uint32_t>(y);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  const uint32_t mag = bits & 0x7FFFFFFFu;
  if (mag > 0x7F800000u) return kE4M3NaNCode;
  if (mag >= kF32Max448Bits) return sign | kE4M3MaxCode;
  if (mag >= kF32MinNormalBits) {
    // Drop 20 of the 23 mantissa bits with RNE. A carry out of the mantissa lands in
    // the exponent, which is the correctly rounded result; the fp32 exponent bias
    // 127 becomes E4M3's 7 by subtracting 120 from the exponent field.
    const uint32_t rounded = (mag + 0x7FFFFu + ((mag >> 20) & 1u)) >> 20;
    return sign | static_cast<uint8_t>(rounded - (120u << 3));
  }
  // E4M3 subnormals are k * 2^-9, k = 0..7; the code is k itself, and k = 8 (a
  // round-up to 2^-6) is code 0x08, the smallest normal, so no special case.
  // With the implicit bit, |y| = significand * 2^(exponent - 150), which is
  // significand >> (141 - exponent) in units of 2^-9.
  const uint32_t exponent = mag >> 23;
  const uint32_t shift = 141u - exponent;  // >= 21 here since exponent <= 120
  if (shift > 24) return sign;             // |y| < 2^-10: below half a unit
  const uint32_t significand = (mag & 0x7FFFFFu) | 0x800000u;
  const uint32_t k =
      (significand + (1u << (shift - 1)) - 1u + ((significand >> shift) & 1u)) >> shift;
  return sign | static_cast<uint8_t>(k);
}

// Exact. 0x7F / 0xFF give a quiet NaN carrying the code's sign.
constexpr float FloatFromE4M3(uint8_t q) {
  const uint32_t sign = static_cast<uint32_t>(q & 0x80u) << 24;
  if ((q & 0x7Fu) == kE4M3NaNCode) return std::bit_cast<float>(sign | 0x7FC00000u);
  const uint32_t exponent = (q >> 3) & 0xFu;
  const uint32_t mantissa = q & 0x7u;
  if (exponent == 0) {
    const float magnitude = static_cast<float>(mantissa) * 0x1p-9f;  // exact
    return sign != 0 ? -magnitude : magnitude;
  }
  return std::bit_cast<float>(sign | ((exponent + 120u) << 23) | (mantissa << 20));
}

}  // namespace weightd::kernels::fp8
