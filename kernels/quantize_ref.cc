// CPU reference of the FP8 quantization kernels: the oracle every other
// implementation is compared against byte for byte, and the host backend's kernels.
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

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

Tiling TilingFor(Scheme scheme, size_t rows, size_t cols) {
  Tiling t{rows, cols, rows, cols};
  if (scheme == Scheme::kPerChannel) t.tile_rows = 1;
  if (scheme == Scheme::kBlock) t.tile_rows = t.tile_cols = kBlockSize;
  if (t.tile_rows == 0) t.tile_rows = 1;
  if (t.tile_cols == 0) t.tile_cols = 1;
  return t;
}

absl::Status TileScales(Scheme scheme, DType dtype, const void* src, const Tiling& tiling,
                        NonFinitePolicy policy, float* scales) {
  std::vector<uint32_t> max_magnitude(tiling.num_tiles(), 0);
  absl::Status status = WithLoader(dtype, [&](auto load) -> absl::Status {
    for (size_t r = 0; r < tiling.rows; ++r) {
      uint32_t* tile_row = max_magnitude.data() + (r / tiling.tile_rows) * tiling.grid_cols();
      for (size_t c = 0; c < tiling.cols; ++c) {
        const size_t i = r * tiling.cols + c;
        const uint32_t magnitude = std::bit_cast<uint32_t>(load(src, i)) & kMagnitudeMask;
        if (magnitude >= kInfBits) {
          if (policy == NonFinitePolicy::kFail) {
            return absl::InvalidArgumentError(absl::StrCat("non-finite value at element ", i));
          }
          continue;
        }
        uint32_t& m = tile_row[c / tiling.tile_cols];
        if (magnitude > m) m = magnitude;
      }
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  for (size_t t = 0; t < max_magnitude.size(); ++t) {
    const float amax = std::bit_cast<float>(max_magnitude[t]);
    scales[t] = scheme == Scheme::kBlock ? BlockScaleFromAmax(amax) : ScaleFromAmax(amax);
  }
  return absl::OkStatus();
}

void QuantizeRows(DType dtype, const void* src, const Tiling& tiling, const float* scales, size_t row_begin,
                  size_t row_end, uint8_t* dst) {
  const size_t grid_cols = tiling.grid_cols();
  std::vector<float> inv(grid_cols);
  WithLoader(dtype, [&](auto load) {
    for (size_t r = row_begin; r < row_end; ++r) {
      const float* tile_scales = scales + (r / tiling.tile_rows) * grid_cols;
      for (size_t g = 0; g < grid_cols; ++g) inv[g] = 1.0f / tile_scales[g];
      const size_t base = (r - row_begin) * tiling.cols;
      for (size_t c = 0; c < tiling.cols; ++c) {
        dst[base + c] = QuantizeOne(load(src, base + c), inv[c / tiling.tile_cols]);
      }
    }
  });
}

}  // namespace weightd::kernels
