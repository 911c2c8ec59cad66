// Seconds of the steady clock since `start`: the time a step took, for logs and stats.
#pragma once

#include <chrono>

namespace weightd {

inline double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace weightd
