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
#include "absl/status/statusor.h"
#include "kernels/dtype.h"
#include "kernels/quantize.h"

namespace weightd::kernels {

// Worker threads a call uses when given `threads` <= 0: what SetDefaultQuantizeThreads
// set, or, where it set nothing, the machine's cores shared among the host passes
// running at once (see HostPass): a path load's 16 read threads each get about one,
// a single push stream all of them.
int DefaultQuantizeThreads();
// `threads` <= 0: back to sharing the machine's cores. Process-wide; set before loads start.
void SetDefaultQuantizeThreads(int threads);

// One host pass (a scale or quantization pass over a tensor) in flight while alive;
// threads() is the workers it may use: SetDefaultQuantizeThreads' figure where one is
// set, else the machine's cores divided by the passes in flight when it began, or by
// the callers its thread declared (ConcurrentCallers), whichever is more (at least
// one). Passes started by many threads at once then share the cores instead of each
// starting one worker per core.
class HostPass {
 public:
  HostPass();
  ~HostPass();
  HostPass(const HostPass&) = delete;
  HostPass& operator=(const HostPass&) = delete;
  int threads() const { return threads_; }

 private:
  int threads_;
};

// While alive, the calling thread is one of `callers` threads that run host passes at
// once (a path load's read threads): its passes take at most cores / callers workers,
// even before the others' passes have started (counting passes in flight alone lets
// the first of many readers take every core). Nests; thread-local.
class ConcurrentCallers {
 public:
  explicit ConcurrentCallers(int callers);
  ~ConcurrentCallers();
  ConcurrentCallers(const ConcurrentCallers&) = delete;
  ConcurrentCallers& operator=(const ConcurrentCallers&) = delete;

 private:
  int previous_;
};

// As TileScales (the same scales, the same error message for the first non-finite
// element in row-major order under kFail). `threads` <= 0: DefaultQuantizeThreads().
absl::Status TileScalesFast(Scheme scheme, DType dtype, const void* src, const Tiling& tiling,
                            NonFinitePolicy policy, float* scales, int threads = 0);

// As QuantizeRows, byte for byte.
void QuantizeRowsFast(DType dtype, const void* src, const Tiling& tiling, const float* scales, size_t row_begin,
                      size_t row_end, uint8_t* dst, int threads = 0);

// As AbsMax (max |x| of n elements; non-finite values under `policy`: INVALID_ARGUMENT
// under kFail, left out under kSaturate), one vectorized pass on the calling thread:
// the maximum is taken on the sign-cleared bit patterns, which order as the values do.
absl::StatusOr<float> AbsMaxFast(DType dtype, const void* src, size_t n, NonFinitePolicy policy);

// Copies the n elements of `src` to `dst` (not overlapping) and returns their AbsMaxFast,
// taken in the same pass: the amax costs little more than the copy.
absl::StatusOr<float> CopyAbsMaxFast(DType dtype, void* dst, const void* src, size_t n, NonFinitePolicy policy);

// As CopyAbsMaxFast, writing `dst` with non-temporal stores (kernels/stream_copy.h):
// for a destination not read again soon (a gathered tensor, placed once whole), so
// the copy neither reads its lines in first nor pushes hotter ones out of the cache.
absl::StatusOr<float> StreamCopyAbsMaxFast(DType dtype, void* dst, const void* src, size_t n, NonFinitePolicy policy);

// Copies the tiling.rows x tiling.cols elements of `src` to `dst` (not overlapping) and
// takes their scales in the same pass, on the calling thread: the scales of
// TileScalesFast, and under kFail its error (the element's index within `src`). Each
// row is read once; the scales cost little more than the copy.
absl::Status CopyTileScalesFast(Scheme scheme, DType dtype, void* dst, const void* src, const Tiling& tiling,
                                NonFinitePolicy policy, float* scales);

// Index of the first NaN or Inf among the n elements of `src`; n when there is none.
size_t FindNonFinite(DType dtype, const void* src, size_t n);

}  // namespace weightd::kernels
