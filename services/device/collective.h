// The collectives a tensor-parallel load needs across its ranks (rank r on the
// group's device r): an all-reduce(max) of per-rank amax values, so every rank
// scales a split tensor as the whole tensor would be scaled, and a broadcast that
// copies a replicated tensor from the one rank it was written to onto the rest.
// Implementations: NCCL for GPUs (services/device/cuda/nccl_collective.h) and an
// in-process one that copies through the host (in_process_collective.h).
// Thread-safe: calls from several threads are serialized.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"

namespace weightd {

class DeviceAllocation;

// A byte range in one rank's allocation.
struct RankRegion {
  DeviceAllocation* allocation = nullptr;
  uint64_t offset = 0;
};

class Collective {
 public:
  virtual ~Collective() = default;

  virtual int ranks() const = 0;
  // values[r] is rank r's (host memory, the same length on every rank); on
  // return every values[r] holds the element-wise maximum over the ranks.
  virtual absl::Status AllReduceMax(std::vector<std::vector<float>>& values) = 0;
  // Copies `size` bytes at regions[root] to regions[r] of every other rank r.
  // Every earlier write to regions[root] must have landed (DeviceBackend::Synchronize).
  // Returns once the copies have landed.
  virtual absl::Status Broadcast(int root, const std::vector<RankRegion>& regions, uint64_t size) = 0;
};

}  // namespace weightd
