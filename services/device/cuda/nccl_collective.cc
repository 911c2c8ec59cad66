#include "services/device/cuda/nccl_collective.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "services/device/cuda/cuda_allocation.h"
#include "services/device/cuda/cuda_check.h"
#include "services/device/cuda/nccl_check.h"

namespace weightd::cuda {
namespace {

// Puts the calling thread's current device back: collectives switch between
// the group's devices on threads that also feed staging rings.
class CurrentDeviceGuard {
 public:
  CurrentDeviceGuard() {
    if (cudaGetDevice(&device_) != cudaSuccess) device_ = -1;
  }
  ~CurrentDeviceGuard() {
    if (device_ >= 0) cudaSetDevice(device_);
  }

 private:
  int device_ = -1;
};

}  // namespace

absl::StatusOr<std::unique_ptr<NcclCollective>> NcclCollective::Create(const std::vector<int>& devices) {
  std::unique_ptr<NcclCollective> group(new NcclCollective());
  group->ranks_.resize(devices.size());
  std::vector<ncclComm_t> comms(devices.size());
  WEIGHTD_NCCL_CHECK(ncclCommInitAll(comms.data(), static_cast<int>(devices.size()), devices.data()));
  for (size_t r = 0; r < devices.size(); ++r) {
    group->ranks_[r].device = devices[r];
    group->ranks_[r].comm = comms[r];
  }
  for (Rank& rank : group->ranks_) {
    WEIGHTD_CUDA_CHECK(cudaSetDevice(rank.device));
    WEIGHTD_CUDA_CHECK(cudaStreamCreateWithFlags(&rank.stream, cudaStreamNonBlocking));
  }
  return group;
}

NcclCollective::~NcclCollective() {
  for (Rank& rank : ranks_) {
    cudaSetDevice(rank.device);
    if (rank.scratch != nullptr) cudaFree(rank.scratch);
    if (rank.stream != nullptr) cudaStreamDestroy(rank.stream);
    if (rank.comm != nullptr) ncclCommDestroy(rank.comm);
  }
}

absl::Status NcclCollective::Wait() {
  for (Rank& rank : ranks_) {
    WEIGHTD_CUDA_CHECK(cudaSetDevice(rank.device));
    WEIGHTD_CUDA_CHECK(cudaStreamSynchronize(rank.stream));
  }
  return absl::OkStatus();
}

absl::Status NcclCollective::AllReduceMax(std::vector<std::vector<float>>& values) {
  std::lock_guard<std::mutex> lock(mu_);
  CurrentDeviceGuard current;
  if (values.size() != ranks_.size()) {
    return absl::InternalError(absl::StrCat("all-reduce of ", values.size(), " ranks in a group of ", ranks_.size()));
  }
  const size_t n = values[0].size();
  for (size_t r = 0; r < ranks_.size(); ++r) {
    Rank& rank = ranks_[r];
    if (values[r].size() != n) return absl::InternalError("all-reduce of unequal lengths");
    WEIGHTD_CUDA_CHECK(cudaSetDevice(rank.device));
    if (rank.scratch_floats < n) {
      if (rank.scratch != nullptr) WEIGHTD_CUDA_CHECK(cudaFree(rank.scratch));
      rank.scratch = nullptr;
      rank.scratch_floats = 0;
      WEIGHTD_CUDA_CHECK(cudaMalloc(&rank.scratch, n * sizeof(float)));
      rank.scratch_floats = n;
    }
    WEIGHTD_CUDA_CHECK(
        cudaMemcpyAsync(rank.scratch, values[r].data(), n * sizeof(float), cudaMemcpyHostToDevice, rank.stream));
  }
  WEIGHTD_NCCL_CHECK(ncclGroupStart());
  for (Rank& rank : ranks_) {
    ncclResult_t result = ncclAllReduce(rank.scratch, rank.scratch, n, ncclFloat32, ncclMax, rank.comm, rank.stream);
    if (result != ncclSuccess) {
      ncclGroupEnd();
      return NcclError(result, "ncclAllReduce", __FILE__, __LINE__);
    }
  }
  WEIGHTD_NCCL_CHECK(ncclGroupEnd());
  for (size_t r = 0; r < ranks_.size(); ++r) {
    Rank& rank = ranks_[r];
    WEIGHTD_CUDA_CHECK(cudaSetDevice(rank.device));
    WEIGHTD_CUDA_CHECK(
        cudaMemcpyAsync(values[r].data(), rank.scratch, n * sizeof(float), cudaMemcpyDeviceToHost, rank.stream));
  }
  return Wait();
}

absl::Status NcclCollective::Broadcast(int root, const std::vector<RankRegion>& regions, uint64_t size) {
  std::lock_guard<std::mutex> lock(mu_);
  CurrentDeviceGuard current;
  if (regions.size() != ranks_.size() || root < 0 || root >= static_cast<int>(ranks_.size())) {
    return absl::InternalError(absl::StrCat("broadcast from rank ", root, " to ", regions.size(),
                                            " ranks in a group of ", ranks_.size()));
  }
  std::vector<uint8_t*> pointers;
  for (size_t r = 0; r < regions.size(); ++r) {
    const auto& allocation = static_cast<const CudaAllocation&>(*regions[r].allocation);
    if (allocation.device() != ranks_[r].device || regions[r].offset > allocation.size() ||
        size > allocation.size() - regions[r].offset) {
      return absl::InternalError(absl::StrCat("broadcast region of rank ", r, " is outside its allocation"));
    }
    pointers.push_back(allocation.device_pointer() + regions[r].offset);
  }
  WEIGHTD_NCCL_CHECK(ncclGroupStart());
  for (size_t r = 0; r < ranks_.size(); ++r) {
    // The send buffer counts on the root only, where the broadcast is in place.
    ncclResult_t result = ncclBroadcast(pointers[r], pointers[r], size, ncclUint8, root, ranks_[r].comm,
                                        ranks_[r].stream);
    if (result != ncclSuccess) {
      ncclGroupEnd();
      return NcclError(result, "ncclBroadcast", __FILE__, __LINE__);
    }
  }
  WEIGHTD_NCCL_CHECK(ncclGroupEnd());
  return Wait();
}

}  // namespace weightd::cuda
