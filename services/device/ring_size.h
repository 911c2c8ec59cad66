// The staging ring's size where none is given: as large as helps, and small enough
// that the rings of every GPU stay in the host's last-level cache. The readers' copies
// into the slots and the copy engines' reads of them then stay in the cache instead of
// going to DRAM beside the page cache's reads (docs/performance.md, "Path loads").
// Thread-safe (pure functions).
#pragma once

#include <cstdint>

namespace weightd {

// Bytes of one GPU's ring of `slots` slots where `devices` GPUs each have one and
// the last-level cache holds `cache_bytes` (0: unknown): slots of whole MiB, each
// kMinStagingSlotBytes to kMaxStagingSlotBytes, the rings together at most 2/3 of
// the cache (the largest slots where the cache is unknown).
inline constexpr uint64_t kMinStagingSlotBytes = uint64_t{4} << 20;  // smaller slots cost more in driver calls
inline constexpr uint64_t kMaxStagingSlotBytes = uint64_t{8} << 20;
uint64_t AutoStagingRingBytes(uint64_t cache_bytes, int slots, int devices);

// The host's last-level cache in bytes (one instance of the deepest level the
// system reports); 0 where it reports none.
uint64_t LastLevelCacheBytes();

}  // namespace weightd
