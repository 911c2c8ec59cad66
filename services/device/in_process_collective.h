// The collectives of host virtual devices, or of any backend without NCCL: the
// all-reduce runs on the host, and a broadcast reads the root's bytes back
// through DeviceBackend::Read and writes them to every other rank. It takes
// the same steps as NCCL (write once to the root rank, broadcast to the
// others), so tensor-parallel loads are tested on machines without a GPU.
// Thread-safe.
#pragma once

#include "services/device/collective.h"
#include "services/device/device_backend.h"

namespace weightd {

class InProcessCollective : public Collective {
 public:
  InProcessCollective(DeviceBackend& backend, int ranks) : backend_(backend), ranks_(ranks) {}

  int ranks() const override { return ranks_; }
  absl::Status AllReduceMax(std::vector<std::vector<float>>& values) override;
  absl::Status Broadcast(int root, const std::vector<RankRegion>& regions, uint64_t size) override;

 private:
  DeviceBackend& backend_;
  const int ranks_;
};

}  // namespace weightd
