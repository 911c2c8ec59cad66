// CPU seconds (user plus system, every thread) this process has used so far: a
// benchmark's cost beside its speed.
#pragma once

#include <sys/resource.h>

namespace weightd {

inline double ProcessCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

}  // namespace weightd
