// Callbacks a source calls as bytes arrive, for progress events and metrics.
// Both may be empty; both must be cheap and thread-safe.
#pragma once

#include <cstdint>
#include <functional>

namespace weightd {

struct SourceHooks {
  std::function<void()> progress;                 // after each chunk
  std::function<void(uint64_t bytes)> received;   // bytes taken from the source
};

}  // namespace weightd
