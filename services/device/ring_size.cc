#include "services/device/ring_size.h"

#include <unistd.h>

#include <algorithm>

namespace weightd {

uint64_t AutoStagingRingBytes(uint64_t cache_bytes, int slots, int devices) {
  const uint64_t n = static_cast<uint64_t>(std::max(1, slots));
  if (cache_bytes == 0) return n * kMaxStagingSlotBytes;
  const uint64_t per_slot = cache_bytes * 2 / 3 / (n * static_cast<uint64_t>(std::max(1, devices)));
  const uint64_t mib = uint64_t{1} << 20;
  return n * std::clamp(per_slot / mib * mib, kMinStagingSlotBytes, kMaxStagingSlotBytes);
}

uint64_t LastLevelCacheBytes() {
  for (int name : {_SC_LEVEL4_CACHE_SIZE, _SC_LEVEL3_CACHE_SIZE, _SC_LEVEL2_CACHE_SIZE}) {
    const long bytes = sysconf(name);
    if (bytes > 0) return static_cast<uint64_t>(bytes);
  }
  return 0;
}

}  // namespace weightd
