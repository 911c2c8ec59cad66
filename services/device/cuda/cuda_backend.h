// The CUDA device backend: exactly sized arenas (VMM by default, legacy IPC on
// request) filled through one bounded staging ring per GPU, FP8 quantized by the
// CUDA kernels that match the CPU reference byte for byte.
// Thread-safe (see DeviceBackend).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/status/statusor.h"
#include "services/device/cuda/cuda_allocation.h"
#include "services/device/cuda/staging_ring.h"
#include "services/device/device_backend.h"

namespace weightd::cuda {

struct CudaBackendOptions {
  HandleKind handles = HandleKind::kVmm;
  uint64_t staging_ring_bytes = 0;  // device memory per GPU for staging; 0: AutoStagingRingBytes
  int staging_slots = 16;
  int staging_copy_streams = 1;
  // Threads waiting for a staging slot sleep (cudaEventBlockingSync) or spin (gpu_waits.h).
  GpuWaits staging_waits = GpuWaits::kAuto;
  HostPinnedAccounting* pinned = nullptr;  // counts the rings' pinned buffers; must outlive the backend
  // Device groups at least this large get an NCCL communicator; smaller ones (by
  // default a single rank, which needs no communication) copy in process, so an
  // ordinary load holds no NCCL buffers. 1 routes one-rank loads through NCCL.
  int nccl_min_ranks = 2;
  // PinSource pins host bytes (a path load's mapped checkpoint segments, a pushed
  // tensor gathered on the host) so the copy engines read them in place; false
  // copies every byte through the ring's slots.
  bool pin_sources = false;
  // QuantizeTakingScales takes per-channel and block scales from the ring's slots.
  bool scales_from_slots = true;
  // Per-tensor tensors park (services/device/parked_tensor.h): WriteTakingAmax takes
  // the amax from the ring's slots, QuantizeStored converts on the device.
  bool park_per_tensor = true;
  // With it, the rest of a parked tensor is held in its load's arena (ArenaLot).
  bool park_rest_in_arena = false;
};

// Number of GPUs the runtime sees; 0 without a driver or a device.
int VisibleDeviceCount();

class CudaBackend : public DeviceBackend {
 public:
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create(const CudaBackendOptions& options);

  v1::DeviceKind kind() const override { return v1::DEVICE_KIND_CUDA; }
  int device_count() const override { return static_cast<int>(devices_.size()); }
  uint64_t capacity(int device) const override { return devices_[device].capacity; }
  uint64_t granularity(int device) const override { return devices_[device].granularity; }
  absl::StatusOr<std::unique_ptr<DeviceAllocation>> Allocate(int device, uint64_t bytes,
                                                             const std::string& label) override;
  absl::Status Write(DeviceAllocation& alloc, uint64_t offset, std::string_view bytes) override;
  absl::Status Quantize(DeviceAllocation& alloc, uint64_t offset, kernels::DType dtype, const void* src,
                        const kernels::Tiling& tiling, const float* scales) override;
  bool takes_scales_while_copying() const override { return options_.scales_from_slots; }
  absl::Status QuantizeTakingScales(DeviceAllocation& alloc, uint64_t offset, kernels::Scheme scheme,
                                    kernels::DType dtype, const void* src, const kernels::Tiling& tiling,
                                    kernels::NonFinitePolicy policy, float* scales) override;
  bool parks_per_tensor() const override { return options_.park_per_tensor; }
  absl::StatusOr<float> WriteTakingAmax(DeviceAllocation& alloc, uint64_t offset, kernels::DType dtype,
                                        std::string_view bytes, kernels::NonFinitePolicy policy) override;
  absl::Status QuantizeStored(DeviceAllocation& alloc, uint64_t stored, uint64_t to, kernels::DType dtype,
                              const kernels::Tiling& tiling, float scale) override;
  bool parks_rest_in_arena() const override { return options_.park_per_tensor && options_.park_rest_in_arena; }
  std::function<bool()> StoredQuantizedMarker(int device) override;
  absl::Status Synchronize(int device) override;
  std::unique_ptr<SourcePin> PinSource(const void* data, uint64_t size) override;
  bool pins_sources() const override { return pin_sources_; }
  uint64_t reserved_bytes(int device) const override { return devices_[device].ring->device_bytes(); }
  void set_accounting(DeviceAccounting* accounting) override { accounting_ = accounting; }
  absl::Status Read(DeviceAllocation& alloc, uint64_t offset, uint64_t size, void* out) override;
  // NCCL's (an InProcessCollective in a build without NCCL), one per device list, kept.
  absl::StatusOr<std::shared_ptr<Collective>> GroupCollective(const std::vector<int>& devices) override;

  // The driver's view of one device, for logs: (free, total) bytes.
  std::pair<uint64_t, uint64_t> DriverMemoryInfo(int device) const;

 private:
  struct Device {
    uint64_t capacity = 0;
    uint64_t granularity = 0;
    std::unique_ptr<StagingRing> ring;
  };
  explicit CudaBackend(const CudaBackendOptions& options) : options_(options) {}
  // The driver's view (cudaMemGetInfo), logged at a load's allocation and end.
  void LogDriverMemory(int device, const char* phase, const std::string& label) const;
  absl::StatusOr<uint8_t*> Region(DeviceAllocation& alloc, uint64_t offset, uint64_t size) const;

  CudaBackendOptions options_;
  std::vector<Device> devices_;
  bool pin_sources_ = false;  // options_.pin_sources and the driver can pin read-only memory
  PinnedSources pinned_sources_;
  DeviceAccounting* accounting_ = nullptr;
  std::mutex collectives_mu_;
  std::map<std::vector<int>, std::shared_ptr<Collective>> collectives_;
};

}  // namespace weightd::cuda
