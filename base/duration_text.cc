#include "base/duration_text.h"

#include <cmath>
#include <cstdio>

namespace weightd {

std::string FormatDuration(double seconds) {
  char buf[32];
  if (!(seconds >= 0)) seconds = 0;
  if (seconds < 1) {
    std::snprintf(buf, sizeof(buf), "%d ms", static_cast<int>(std::lround(seconds * 1000)));
  } else if (seconds < 60) {
    std::snprintf(buf, sizeof(buf), "%.1f s", seconds);
  } else if (seconds < 3600) {
    long s = std::lround(seconds);
    std::snprintf(buf, sizeof(buf), "%ld min %02ld s", s / 60, s % 60);
  } else {
    long m = std::lround(seconds / 60);
    std::snprintf(buf, sizeof(buf), "%ld h %02ld min", m / 60, m % 60);
  }
  return buf;
}

}  // namespace weightd
