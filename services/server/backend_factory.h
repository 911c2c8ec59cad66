// Chooses and builds the device backend from the daemon's options: `host`
// (memfd virtual devices), `cuda` (every visible GPU), or `auto` (cuda when this
// build has it and a GPU is visible, host otherwise).
// Thread-safe (no shared state).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "services/device/device_backend.h"
#include "services/device/gpu_waits.h"
#include "services/device/pinned_accounting.h"

namespace weightd {

struct BackendOptions {
  std::string backend = "auto";     // host | cuda | auto
  int host_devices = 1;
  uint64_t host_memory_bytes = 0;   // shared by the host devices: the container's memory
  uint64_t host_write_bytes_per_second = 0;  // host backend: 0 for memory speed
  std::string cuda_handles = "vmm";  // vmm | ipc
  uint64_t staging_ring_bytes = 0;  // 0: sized to the last-level cache (services/device/ring_size.h)
  int staging_slots = 16;
  int staging_copy_streams = 1;
  GpuWaits staging_waits = GpuWaits::kAuto;  // --staging-blocking-waits
  bool scales_from_slots = true;
  bool park_per_tensor = true;  // DeviceBackend::parks_per_tensor, either backend
  bool park_rest_in_arena = false;  // DeviceBackend::parks_rest_in_arena, with park_per_tensor
  bool pin_sources = false;  // cuda: CudaBackendOptions::pin_sources
  int nccl_min_ranks = 2;
  HostPinnedAccounting* pinned = nullptr;  // page-locked staging memory is counted here
  std::string test_hang_collective;  // host backend only: "", broadcast or all_reduce
};

absl::StatusOr<std::unique_ptr<DeviceBackend>> CreateBackend(const BackendOptions& options);

}  // namespace weightd
