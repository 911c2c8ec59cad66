// Test helpers for the kernel tests: tensors written from fp32 values into
// BF16 / F16 / F32 bytes (exactly, or the test fails), and bytes shown as hex
// so that a mismatch prints both sides. Not thread-safe (gtest assertions).
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/string_view.h"
#include "gtest/gtest.h"
#include "kernels/dtype.h"
#include "kernels/quantize.h"

namespace weightd::kernels {

inline const char* SchemeName(Scheme s) {
  return s == Scheme::kPerTensor ? "per-tensor" : s == Scheme::kPerChannel ? "per-channel" : "block";
}

// The value of binary16 bits `h` by the format's definition, in double.
inline double HalfValue(uint16_t h) {
  const int sign = (h & 0x8000) ? -1 : 1;
  const int e = (h >> 10) & 0x1F;
  const int m = h & 0x3FF;
  if (e == 0x1F) return m ? std::numeric_limits<double>::quiet_NaN() : sign * std::numeric_limits<double>::infinity();
  if (e == 0) return sign * std::ldexp(m, -24);
  return sign * std::ldexp(1024 + m, e - 25);
}

// binary16 bits of v, which must be a value binary16 holds (checked by the caller).
inline uint16_t HalfBitsOf(float v) {
  const uint16_t sign = std::signbit(v) ? 0x8000 : 0x0000;
  const float a = std::fabs(v);
  if (std::isnan(v)) return sign | 0x7E00;
  if (std::isinf(v)) return sign | 0x7C00;
  if (a < 0x1p-14f) return sign | static_cast<uint16_t>(a * 0x1p24f);  // subnormal or zero
  int e = 0;
  const float m = std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  const uint16_t mantissa = static_cast<uint16_t>((m * 2.0f - 1.0f) * 1024.0f);
  return sign | static_cast<uint16_t>((e - 1 + 15) << 10) | mantissa;
}

// The elements in `dtype`; every value must convert exactly (NaN: any NaN).
inline std::vector<uint8_t> ExactBytes(DType dtype, const std::vector<float>& values) {
  std::vector<uint8_t> bytes(values.size() * DTypeSize(dtype));
  for (size_t i = 0; i < values.size(); ++i) {
    uint8_t* at = bytes.data() + i * DTypeSize(dtype);
    const uint32_t bits = std::bit_cast<uint32_t>(values[i]);
    if (dtype == DType::kBF16) {
      const uint16_t h = static_cast<uint16_t>(std::isnan(values[i]) ? 0x7FC0 : bits >> 16);
      std::memcpy(at, &h, 2);
    } else if (dtype == DType::kF16) {
      const uint16_t h = HalfBitsOf(values[i]);
      std::memcpy(at, &h, 2);
    } else {
      std::memcpy(at, &bits, 4);
    }
    const float back = LoadAsFloat(dtype, bytes.data(), i);
    const bool same = std::isnan(values[i]) ? std::isnan(back)
                                            : std::bit_cast<uint32_t>(back) == bits;
    EXPECT_TRUE(same) << values[i] << " is not exact in " << DTypeName(dtype);
  }
  return bytes;
}

inline std::string Hex(const std::vector<uint8_t>& bytes) {
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

// The scales as a checkpoint stores them: little-endian fp32, in hex.
inline std::string ScaleBytes(const std::vector<float>& scales) {
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(scales.data()), scales.size() * sizeof(float)));
}

}  // namespace weightd::kernels
