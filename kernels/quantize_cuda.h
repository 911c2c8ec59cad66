// FP8 (E4M3FN) quantization on the GPU, byte-exact to kernels::QuantizeRows.
// Plain C++ interface (no CUDA or Abseil types), so that .cc files compiled by
// the host compiler call it and the .cu file compiles without Abseil.
// Thread-safe: launches are ordered by the stream the caller passes.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/dtype.h"
#include "kernels/quantize.h"

namespace weightd::kernels::cuda {

// Quantizes elements [element_begin, element_end) of a row-major tensor described
// by `tiling`. `src` and `dst` are device pointers to element_begin's input and
// output; `scales` is a device pointer to the scale of the first tile row that the
// range touches, that is tile row (element_begin / cols) / tile_rows, followed by
// the rest of the grid rows the range touches. Enqueued on `stream`
// (a cudaStream_t). Returns a cudaError_t value (0 is success).
int LaunchQuantize(DType dtype, const void* src, const Tiling& tiling, const float* scales, uint64_t element_begin,
                   uint64_t element_end, uint8_t* dst, void* stream, bool hardware_convert = true);

// The name of a cudaError_t value, for messages.
const char* ErrorName(int error);

}  // namespace weightd::kernels::cuda
