#include "base/resident_buffers.h"

#include <malloc.h>

namespace weightd {

void KeepLargeBuffersResident() {
#if defined(__GLIBC__)
  // Setting either turns off glibc's dynamic thresholds, which only move after a
  // mapped block has already been freed once per size.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 32 << 20);
#endif
}

}  // namespace weightd
