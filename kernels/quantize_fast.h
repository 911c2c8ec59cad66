// The fast CPU implementation of the tiled quantization API of kernels/quantize.h:
// branch-free element code that the compiler vectorizes (SSE2, and AVX2 where the
// CPU has it, chosen at run time), spread over several threads by rows. Same
// semantics and the same bytes as TileScales / QuantizeRows (the reference, which
// stays the oracle); the host backend, the load pipeline and `weightctl quantize`
// use these.
//
// Thread-safety: pure functions over their arguments; each call may start and
// join its own worker threads.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "kernels/dtype.h"
#include "kernels/quantize.h"

namespace weightd::kernels {

// Worker threads a call uses when given `threads` <= 0: the machine's cores, or
// what SetDefaultQuantizeThreads set. A loader whose own threads already run many
// calls at once (a path load's read threads) may want fewer per call.
int DefaultQuantizeThreads();
// `threads` <= 0: back to the machine's cores. Process-wide; set before loads start.
void SetDefaultQuantizeThreads(int threads);

// As TileScales (the same scales, the same error message for the first non-finite
// element in row-major order under kFail). `threads` <= 0: DefaultQuantizeThreads().
absl::Status TileScalesFast(Scheme scheme, DType dtype, const void* src, const Tiling& tiling,
                            NonFinitePolicy policy, float* scales, int threads = 0);

// As QuantizeRows, byte for byte.
void QuantizeRowsFast(DType dtype, const void* src, const Tiling& tiling, const float* scales, size_t row_begin,
                      size_t row_end, uint8_t* dst, int threads = 0);

// Index of the first NaN or Inf among the n elements of `src`; n when there is none.
size_t FindNonFinite(DType dtype, const void* src, size_t n);

}  // namespace weightd::kernels
