// The collectives of a tensor-parallel group of GPUs through NCCL: one
// communicator per device list, created once for all of them in this process
// (ncclCommInitAll) and reused by every load on those devices, with a stream
// and a small scratch buffer per rank. Every call is one NCCL group over all
// ranks and returns once it has completed.
// Thread-safe: calls are serialized (a communicator takes one operation at a time).
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <memory>
#include <mutex>
#include <vector>

#include "absl/status/statusor.h"
#include "services/device/collective.h"

namespace weightd::cuda {

class NcclCollective : public Collective {
 public:
  // `devices`: distinct CUDA device ordinals, rank r on devices[r].
  static absl::StatusOr<std::unique_ptr<NcclCollective>> Create(const std::vector<int>& devices);
  ~NcclCollective() override;

  int ranks() const override { return static_cast<int>(ranks_.size()); }
  absl::Status AllReduceMax(std::vector<std::vector<float>>& values) override;
  // `regions` are allocations of the CUDA backend on this group's devices.
  absl::Status Broadcast(int root, const std::vector<RankRegion>& regions, uint64_t size) override;

 private:
  struct Rank {
    int device = 0;
    ncclComm_t comm = nullptr;
    cudaStream_t stream = nullptr;
    float* scratch = nullptr;  // device memory for AllReduceMax
    size_t scratch_floats = 0;
  };
  NcclCollective() = default;
  absl::Status Wait();

  std::mutex mu_;
  std::vector<Rank> ranks_;
};

}  // namespace weightd::cuda
