#include "bench/gen/tensor_fill.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace weightd::bench {
namespace {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

// splitmix64's output function: a bijection with full avalanche.
uint64_t Mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Counter-based draw: word `n` of the stream keyed by `key`, with no state between
// draws, which is what lets any element range be generated on its own.
uint64_t Draw(uint64_t key, uint64_t n) { return Mix(key + (n + 1) * kGolden); }

enum class Kind { kNorm, kEmbedding, kLinear };

Kind KindOf(std::string_view name) {
  if (name.ends_with("norm.weight")) return Kind::kNorm;
  if (name.find("embed_tokens") != std::string_view::npos || name.starts_with("lm_head")) {
    return Kind::kEmbedding;
  }
  return Kind::kLinear;
}

// Sum of seven 16-bit uniforms, centred: an odd integer in [-458745, 458745], exact
// in fp32, with variance 7 * (65536^2 - 1) / 3.
constexpr int32_t kHalfRange = 7 * 65535;

int32_t CenteredSum(uint64_t a, uint64_t b) {
  int32_t s = 0;
  for (int k = 0; k < 4; ++k) s += static_cast<int32_t>((a >> (16 * k)) & 0xFFFF);
  for (int k = 0; k < 3; ++k) s += static_cast<int32_t>((b >> (16 * k)) & 0xFFFF);
  return 2 * s - kHalfRange;
}

// sqrt and division are correctly rounded in IEEE arithmetic, so these constants
// are the same everywhere.
float NormalScale(double sigma) {
  return static_cast<float>(sigma / std::sqrt(7.0 * (65536.0 * 65536.0 - 1.0) / 3.0));
}

// Everything about a tensor that does not depend on the element index.
struct Key {
  uint64_t key;
  Kind kind;
  float scale;  // multiplies CenteredSum
};

Key MakeKey(uint64_t seed, std::string_view name) {
  const Kind kind = KindOf(name);
  const float scale =
      kind == Kind::kNorm ? static_cast<float>(0.05 / kHalfRange) : NormalScale(0.02);
  return {Mix(Mix(seed) ^ Fnv1a64(name)), kind, scale};
}

float Value(const Key& k, uint64_t index) {
  const uint64_t a = Draw(k.key, 3 * index);
  const uint64_t b = Draw(k.key, 3 * index + 1);
  const float centred = static_cast<float>(CenteredSum(a, b));
  switch (k.kind) {
    case Kind::kNorm:
      // fmaf: one rounding whatever the compiler's contraction setting.
      return std::fmaf(centred, k.scale, 1.0f);
    case Kind::kEmbedding:
      return centred * k.scale;
    case Kind::kLinear:
      // The unused top 16 bits of `b` pick outliers: 7 in 65536, about 0.011%.
      if ((b >> 48) < 7) {
        const uint64_t c = Draw(k.key, 3 * index + 2);
        const float magnitude = std::fmaf(static_cast<float>(c >> 40), 0.4f / 16777216.0f, 0.1f);
        return (c & 1) ? -magnitude : magnitude;
      }
      return centred * k.scale;
  }
  return 0.0f;
}

}  // namespace

uint64_t Fnv1a64(std::string_view bytes) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001B3ull;
  }
  return h;
}

float SyntheticValue(uint64_t seed, std::string_view name, uint64_t index) {
  return Value(MakeKey(seed, name), index);
}

uint16_t Fp32ToBf16Bits(float value) {
  const uint32_t x = std::bit_cast<uint32_t>(value);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((x >> 16) | 0x0040u);
  // Adding 0x7FFF plus the lowest kept bit rounds half to even; a carry into the
  // exponent is the correct result, up to and including infinity.
  return static_cast<uint16_t>((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
}

uint16_t Fp32ToF16Bits(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t x = bits & 0x7FFFFFFFu;
  if (x > 0x7F800000u) return sign | 0x7E00u;
  // 65520 is halfway between 65504 (odd mantissa) and 65536: it rounds to infinity.
  if (x >= 0x477FF000u) return sign | 0x7C00u;
  if (x >= 0x38800000u) {  // at least 2^-14: a normal half
    const uint32_t rebased = x - (112u << 23);
    return sign | static_cast<uint16_t>((rebased + 0x0FFFu + ((rebased >> 13) & 1u)) >> 13);
  }
  // Subnormal half: value = mantissa * 2^(e - 150), half unit 2^-24, so the
  // result is mantissa >> (126 - e), rounded half to even. Rounding up out of the
  // subnormals yields 0x0400, the smallest normal, as it should.
  const uint32_t e = x >> 23;
  if (e < 102) return sign;  // below 2^-25: rounds to zero
  const uint32_t mantissa = (x & 0x7FFFFFu) | 0x800000u;
  const uint32_t shift = 126 - e;  // 14..24
  uint32_t q = mantissa >> shift;
  const uint32_t rest = mantissa & ((1u << shift) - 1);
  const uint32_t half = 1u << (shift - 1);
  if (rest > half || (rest == half && (q & 1u))) ++q;
  return sign | static_cast<uint16_t>(q);
}

void FillTensor(uint64_t seed, std::string_view name, kernels::DType dtype, uint64_t element_offset,
                std::span<uint8_t> out) {
  const Key key = MakeKey(seed, name);
  uint8_t* p = out.data();
  switch (dtype) {
    case kernels::DType::kBF16:
    case kernels::DType::kF16: {
      const bool bf16 = dtype == kernels::DType::kBF16;
      const size_t n = out.size() / 2;
      for (size_t i = 0; i < n; ++i) {
        const float v = Value(key, element_offset + i);
        const uint16_t h = bf16 ? Fp32ToBf16Bits(v) : Fp32ToF16Bits(v);
        p[2 * i] = static_cast<uint8_t>(h);
        p[2 * i + 1] = static_cast<uint8_t>(h >> 8);
      }
      return;
    }
    case kernels::DType::kF32: {
      const size_t n = out.size() / 4;
      for (size_t i = 0; i < n; ++i) {
        const uint32_t w = std::bit_cast<uint32_t>(Value(key, element_offset + i));
        for (int b = 0; b < 4; ++b) p[4 * i + b] = static_cast<uint8_t>(w >> (8 * b));
      }
      return;
    }
    default:
      break;
  }
  std::fprintf(stderr, "FillTensor: unsupported dtype %s\n",
               std::string(kernels::DTypeName(dtype)).c_str());
  std::abort();
}

FastTensorFill::FastTensorFill(uint64_t seed, std::string_view name, kernels::DType dtype)
    : key_(Mix(MakeKey(seed, name).key ^ 0x66617374ull)), element_size_(kernels::DTypeSize(dtype)) {
  const size_t period_bytes = kFastPeriod * element_size_;
  twice_.resize(2 * period_bytes);
  FillTensor(seed, name, dtype, 0, std::span<uint8_t>(twice_.data(), period_bytes));
  std::memcpy(twice_.data() + period_bytes, twice_.data(), period_bytes);
}

void FastTensorFill::Fill(uint64_t element_offset, std::span<uint8_t> out) const {
  uint8_t* p = out.data();
  uint64_t n = out.size() / element_size_;
  uint64_t index = element_offset;
  while (n > 0) {
    const uint64_t block = index / kFastPeriod;
    const uint64_t within = index % kFastPeriod;
    const uint64_t rotation = block == 0 ? 0 : Draw(key_, block) % kFastPeriod;  // block 0: exact
    const uint64_t count = std::min(n, kFastPeriod - within);
    std::memcpy(p, twice_.data() + (rotation + within) * element_size_, count * element_size_);
    p += count * element_size_;
    index += count;
    n -= count;
  }
}

}  // namespace weightd::bench
