// How threads wait for the GPU (a free staging slot, the copies from a pinned
// source): spinning on a core (the lowest latency) or sleeping until the driver
// wakes them (cudaEventBlockingSync), set by --staging-blocking-waits.
//
// Under kAuto (the default) the choice is the calling thread's: a thread that many
// push streams share (a push's drain, its placements) sleeps, so that its waits
// leave the cores to the threads receiving the streams; any other thread (a path
// load's readers, one per core) spins. An 8-stream push ran 0.99-1.22x as fast
// (mean 1.07x) with its threads sleeping, path loads 0.90-1.03x as fast with their
// readers sleeping (docs/performance.md, "The push path": "Eight streams, what
// moved them").
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace weightd {

enum class GpuWaits { kSpin, kSleep, kAuto };

// --staging-blocking-waits: true (kSleep), false (kSpin) or auto; INVALID_ARGUMENT otherwise.
absl::StatusOr<GpuWaits> ParseGpuWaits(const std::string& value);

// While one lives, the calling thread sleeps on GPU waits under kAuto. Nests.
class SleepOnGpuWaits {
 public:
  SleepOnGpuWaits();
  ~SleepOnGpuWaits();
  SleepOnGpuWaits(const SleepOnGpuWaits&) = delete;
  SleepOnGpuWaits& operator=(const SleepOnGpuWaits&) = delete;

 private:
  bool before_;
};

// Whether the calling thread's waits sleep under `mode`.
bool SleepsOnGpuWaits(GpuWaits mode);

}  // namespace weightd
