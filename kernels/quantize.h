// FP8 (E4M3FN) quantization kernels: raw pointers and sizes in, a Status back.
// No gRPC, protobuf or registry types here. The arithmetic is exactly the one of
// docs/quantization.md; every implementation (CPU reference, fast CPU, CUDA)
// produces the same bytes.
//
// Thread-safety: all functions are pure over their arguments.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/dtype.h"

namespace weightd::kernels {

inline constexpr float kE4M3Max = 448.0f;

enum class NonFinitePolicy {
  kFail,      // NaN or Inf fails with INVALID_ARGUMENT naming the element index
  kSaturate,  // NaN -> +448, +Inf -> +448, -Inf -> -448 (after scaling: y is clamped)
};

// Element i of `src` (of type `dtype`, little-endian, any alignment) as fp32; exact
// for every dtype (F8_E4M3 decodes as DecodeE4M3).
float LoadAsFloat(DType dtype, const void* src, size_t i);

// fp32 -> E4M3FN, round to nearest even, saturating to +-448 (0x7E / 0xFE);
// NaN -> 0x7F. Subnormals down to 2^-9; magnitudes at or below 2^-10 round to zero
// (2^-10 exactly is a tie and rounds to even, i.e. zero), keeping the sign.
uint8_t EncodeE4M3(float y);
// E4M3FN -> fp32, exact. 0x7F / 0xFF decode to NaN.
float DecodeE4M3(uint8_t q);

// max |x| over n elements. Under kFail a NaN or Inf returns INVALID_ARGUMENT whose
// message says "non-finite value at element <i>"; under kSaturate non-finite
// values are left out of the maximum (their outputs saturate regardless).
absl::StatusOr<float> AbsMax(DType dtype, const void* src, size_t n, NonFinitePolicy policy);

// Per-tensor / per-channel scale: fp32(amax / 448); amax == 0 gives 1.0.
float ScaleFromAmax(float amax);
// Block scale: amax floored at fp32(1e-4) first, so never zero.
float BlockScaleFromAmax(float amax);

// dst[i] = EncodeE4M3(clamp(fp32(x[i] * fp32(1 / scale)), -448, 448)). Non-finite
// inputs give the same bytes under either policy (kFail callers run AbsMax first, so
// never pass them): NaN -> 0x7E, +Inf -> 0x7E, -Inf -> 0xFE. If 1 / scale overflows
// (scale at or below about 2^-128, amax below about 1.3e-36), a zero input still
// gives a zero of its sign instead of the formula's NaN. An F8_E4M3 source is
// decoded and requantized; the pipeline passes FP8 tensors through instead.
void QuantizeE4M3(DType dtype, const void* src, size_t n, float scale, NonFinitePolicy policy,
                  uint8_t* dst);

// The three schemes differ only in how a 2-D [rows, cols] weight is cut into
// tiles that share one scale: per-tensor one tile of rows x cols, per-channel
// 1 x cols (one per output row), block 128 x 128 (edge tiles hold only their
// real elements). Scales are laid out row-major over the tile grid, which is the
// checkpoint layout of each scheme ([], [rows, 1], [ceil(rows/128), ceil(cols/128)]).
enum class Scheme { kPerTensor, kPerChannel, kBlock };

inline constexpr size_t kBlockSize = 128;

struct Tiling {
  size_t rows = 0, cols = 0;
  size_t tile_rows = 1, tile_cols = 1;
  size_t grid_rows() const { return (rows + tile_rows - 1) / tile_rows; }
  size_t grid_cols() const { return (cols + tile_cols - 1) / tile_cols; }
  size_t num_tiles() const { return grid_rows() * grid_cols(); }
};

Tiling TilingFor(Scheme scheme, size_t rows, size_t cols);

// scales[t] for every tile t: ScaleFromAmax of the tile's amax (BlockScaleFromAmax
// for kBlock). Non-finite values as AbsMax treats them; the message names the
// element's index in the tensor.
absl::Status TileScales(Scheme scheme, DType dtype, const void* src, const Tiling& tiling,
                        NonFinitePolicy policy, float* scales);

// Quantizes rows [row_begin, row_end) of the tensor: `src` and `dst` point at
// row_begin's first element; every element uses its tile's scale (as
// QuantizeE4M3 does with one scale). Row ranges let a device stream a tensor
// through a bounded staging buffer.
void QuantizeRows(DType dtype, const void* src, const Tiling& tiling, const float* scales, size_t row_begin,
                  size_t row_end, uint8_t* dst);

}  // namespace weightd::kernels
