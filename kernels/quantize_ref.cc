// CPU reference of the FP8 quantization kernels: the oracle every other
// implementation is compared against byte for byte, and the host backend's kernels.
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kernels/dtype.h"
#include "kernels/float_convert.h"
#include "kernels/fp8_e4m3.h"
#include "kernels/quantize.h"

namespace weightd::kernels {
namespace {

// fp32(1e-4): the block scheme's amax floor, so a block scale is never zero.
constexpr float kBlockAmaxFloor = 1e-4f;

constexpr uint32_t kMagnitudeMask = 0x7FFFFFFFu;
constexpr uint32_t kInfBits = 0x7F800000u;

inline uint8_t QuantizeOne(float x, float inv) {
  // NaN saturates to +448 under either policy (kFail callers ran AbsMax first).
  if (std::isnan(x)) return fp8::kE4M3MaxCode;
  float y = x * inv;
  // Only 0 * Inf (a scale so small that 1/scale overflowed) gets here: the formula
  // has no answer, and a zero input keeps its zero.
  if (std::isnan(y)) return std::signbit(x) ? 0x80 : 0x00;
  if (y > kE4M3Max) y = kE4M3Max;
  if (y < -kE4M3Max) y = -kE4M3Max;
  return fp8::E4M3FromFloat(y);
}

}  // namespace

absl::StatusOr<float> AbsMax(DType dtype, const void* src, size_t n, NonFinitePolicy policy) {
  return WithLoader(dtype, [&](auto load) -> absl::StatusOr<float> {
    // Non-negative finite floats order as their bit patterns do, so the maximum
    // is taken on integers; -0.0 has magnitude bits 0 like +0.0.
    uint32_t max_magnitude = 0;
    for (size_t i = 0; i < n; ++i) {
      const uint32_t magnitude = std::bit_cast<uint32_t>(load(src, i)) & kMagnitudeMask;
      if (magnitude >= kInfBits) {
        if (policy == NonFinitePolicy::kFail) {
          return absl::InvalidArgumentError(absl::StrCat("non-finite value at element ", i));
        }
        continue;
      }
      if (magnitude > max_magnitude) max_magnitude = magnitude;
    }
    return std::bit_cast<float>(max_magnitude);
  });
}

float ScaleFromAmax(float amax) {
  if (amax == 0.0f) return 1.0f;
  return amax / kE4M3Max;
}

float BlockScaleFromAmax(float amax) {
  if (amax < kBlockAmaxFloor) amax = kBlockAmaxFloor;
  return amax / kE4M3Max;
}

void QuantizeE4M3(DType dtype, const void* src, size_t n, float scale,
                  NonFinitePolicy /*policy: both give the same bytes*/, uint8_t* dst) {
  const float inv = 1.0f / scale;
  WithLoader(dtype, [&](auto load) {
    for (size_t i = 0; i < n; ++i) dst[i] = QuantizeOne(load(src, i), inv);
  });
}

}  // namespace weightd::kernels
