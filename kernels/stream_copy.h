// Copies whose stores bypass the cache (non-temporal stores), for a destination
// that is not read again soon: a pushed tensor gathered on the host is read once,
// when it is whole, tens of megabytes later. A plain copy reads each destination
// line into the cache before writing it (twice the memory traffic of the bytes)
// and pushes out lines that are read again soon (the receive buffers, the staging
// slots). On x86-64 with AVX2; elsewhere an ordinary copy. The stores are fenced
// before each function returns. Not overlapping; any alignment.
#pragma once

#include <cstddef>
#include <cstdint>

namespace weightd::kernels {

void StreamCopy(void* dst, const void* src, size_t bytes);
// As StreamCopy, of n elements of 16 (32) bits, returning the largest element
// with its sign bit cleared (& 0x7FFF, & 0x7FFFFFFF): for BF16, F16 and F32 the
// magnitude that orders as |x| does. A `dst` not aligned to the element size
// gets ordinary stores.
uint16_t StreamCopyMax16(void* dst, const void* src, size_t n);
uint32_t StreamCopyMax32(void* dst, const void* src, size_t n);

}  // namespace weightd::kernels
