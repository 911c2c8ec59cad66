// Element loaders: element i of a little-endian, possibly unaligned buffer of one
// DType, widened exactly to fp32. Function objects rather than a switch so that a
// kernel picks one per tensor and its loop inlines the conversion.
//
// Thread-safety: pure functions.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/dtype.h"
#include "kernels/fp8_e4m3.h"

namespace weightd::kernels {

// safetensors data is little-endian; a plain memcpy load is only right on such hosts.
static_assert(std::endian::native == std::endian::little, "weightd assumes a little-endian host");

template <typename T>
inline T LoadLittleEndian(const void* src, size_t i) {
  T value;
  std::memcpy(&value, static_cast<const unsigned char*>(src) + i * sizeof(T), sizeof(T));
  return value;
}

// BF16 is the upper half of an fp32.
constexpr float FloatFromBf16Bits(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}

// binary32 -> IEEE binary16 bits, round to nearest even, overflow to +-Inf, NaN
// to a quiet NaN: what a cast to _Float16 gives, on compilers without that type.
inline uint16_t HalfBitsFromFloat(float value) {
  const uint32_t x = std::bit_cast<uint32_t>(value);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t mag = x & 0x7FFFFFFFu;
  if (mag > 0x7F800000u) return sign | 0x7E00u;   // NaN
  if (mag >= 0x477FF000u) return sign | 0x7C00u;  // 65520 and up round to Inf
  if (mag >= 0x38800000u) {                       // normal: 2^-14 and up
    const uint32_t rounded = mag + 0xFFFu + ((mag >> 13) & 1u);
    return sign | static_cast<uint16_t>((rounded >> 13) - (112u << 10));
  }
  // Subnormal (or rounds up to the smallest normal): units of 2^-24, exact scaling.
  const float units = std::bit_cast<float>(mag) * 0x1p24f;
  uint32_t k = static_cast<uint32_t>(units);
  const float rest = units - static_cast<float>(k);
  if (rest > 0.5f || (rest == 0.5f && (k & 1u))) ++k;
  return sign | static_cast<uint16_t>(k);
}

// IEEE binary16 -> binary32, exact for every pattern; NaN payloads are kept.
constexpr float FloatFromHalfBits(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1Fu;
  const uint32_t mantissa = bits & 0x3FFu;
  if (exponent == 0) {
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;  // exact
    return sign != 0 ? -magnitude : magnitude;
  }
  if (exponent == 0x1F) return std::bit_cast<float>(sign | 0x7F800000u | (mantissa << 13));
  return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

struct Bf16Loader {
  float operator()(const void* src, size_t i) const {
    return FloatFromBf16Bits(LoadLittleEndian<uint16_t>(src, i));
  }
};

struct F16Loader {
  float operator()(const void* src, size_t i) const {
    return FloatFromHalfBits(LoadLittleEndian<uint16_t>(src, i));
  }
};

struct F32Loader {
  float operator()(const void* src, size_t i) const {
    return std::bit_cast<float>(LoadLittleEndian<uint32_t>(src, i));
  }
};

struct E4M3Loader {
  float operator()(const void* src, size_t i) const {
    return fp8::FloatFromE4M3(static_cast<const uint8_t*>(src)[i]);
  }
};

// For a dtype the kernels do not quantize: reads nothing rather than out of bounds.
struct ZeroLoader {
  float operator()(const void*, size_t) const { return 0.0f; }
};

// Calls body(loader) with the loader of `dtype`; the switch runs once per call.
template <typename Body>
decltype(auto) WithLoader(DType dtype, Body&& body) {
  switch (dtype) {
    case DType::kBF16: return body(Bf16Loader{});
    case DType::kF16: return body(F16Loader{});
    case DType::kF32: return body(F32Loader{});
    case DType::kF8E4M3: return body(E4M3Loader{});
    default: break;
  }
  return body(ZeroLoader{});
}

}  // namespace weightd::kernels
