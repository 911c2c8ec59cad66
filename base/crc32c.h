// CRC-32C (Castagnoli), as iSCSI and ext4 use it: the checksum each peer item
// carries. SSE4.2's crc32 instruction where the CPU has it, a table otherwise
// (same values). Thread-safe (pure functions).
#pragma once

#include <cstdint>
#include <string_view>

namespace weightd {

// Extends `crc` (0 for an empty prefix) by `bytes`: Crc32c(Crc32c(0, a), b) == Crc32c(0, a + b).
uint32_t Crc32c(uint32_t crc, std::string_view bytes);

}  // namespace weightd
