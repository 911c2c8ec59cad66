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

}  // namespace weightd::kernels
