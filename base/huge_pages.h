// Asks the kernel to back a large host buffer with transparent huge pages
// (madvise MADV_HUGEPAGE), so that filling it takes one page fault per 2 MiB
// instead of one per 4 KiB. A pushed tensor is gathered into a fresh buffer of
// up to a gigabyte; with 4 KiB pages its faults (and the memory cgroup's charge
// for each page) took about a tenth of the daemon's CPU at 8 streams
// (docs/performance.md, "The push path"). Advisory: where transparent huge pages
// are off ("never") or the call fails, nothing changes.
#pragma once

#include <cstddef>

namespace weightd {

// Only the whole 2 MiB-aligned pages inside [data, data + bytes); buffers smaller
// than kHugePageAdviceMin are left alone (a few faults, and huge pages would
// round their memory up). Whether the advice was taken (false: too small, or a
// kernel without transparent huge pages).
inline constexpr size_t kHugePageBytes = size_t{2} << 20;  // x86-64's transparent huge page
inline constexpr size_t kHugePageAdviceMin = size_t{8} << 20;
bool AdviseHugePages(void* data, size_t bytes);

}  // namespace weightd
