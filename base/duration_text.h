// Human durations for output: "850 ms", "12.4 s", "3 min 05 s", "2 h 07 min".
// Thread-safe (pure).
#pragma once

#include <string>

namespace weightd {

std::string FormatDuration(double seconds);

}  // namespace weightd
