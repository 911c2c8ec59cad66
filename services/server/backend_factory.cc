#include "services/server/backend_factory.h"

#include "absl/strings/str_cat.h"
#include "services/device/host_backend.h"
#ifdef WEIGHTD_HAVE_CUDA
#include "services/device/cuda/cuda_backend.h"
#endif

namespace weightd {
namespace {

absl::StatusOr<std::unique_ptr<DeviceBackend>> CreateHost(const BackendOptions& options) {
  if (options.host_devices < 1 || options.host_devices > 64) {
    return absl::InvalidArgumentError("--host-devices must be between 1 and 64");
  }
  if (options.host_memory_bytes == 0) return absl::InvalidArgumentError("host backend: no host memory figure");
  uint64_t capacity = options.host_memory_bytes / static_cast<uint64_t>(options.host_devices);
  auto backend = std::make_unique<HostBackend>(options.host_devices, capacity);
  backend->set_write_bytes_per_second(options.host_write_bytes_per_second);
  absl::StatusOr<CollectiveHang> hang = ParseCollectiveHang(options.test_hang_collective);
  if (!hang.ok()) return hang.status();
  backend->set_test_collective_hang(*hang);
  backend->set_park_per_tensor(options.park_per_tensor, uint64_t{4} << 20, options.park_rest_in_arena);
  return std::unique_ptr<DeviceBackend>(std::move(backend));
}

#ifdef WEIGHTD_HAVE_CUDA
absl::StatusOr<std::unique_ptr<DeviceBackend>> CreateCuda(const BackendOptions& options) {
  if (!options.test_hang_collective.empty()) {
    return absl::InvalidArgumentError("--test-hang-collective needs the host backend (--backend=host)");
  }
  cuda::CudaBackendOptions cuda_options;
  if (options.cuda_handles == "ipc") {
    cuda_options.handles = cuda::HandleKind::kLegacyIpc;
  } else if (options.cuda_handles != "vmm") {
    return absl::InvalidArgumentError(absl::StrCat("--cuda-handles must be vmm or ipc, not '", options.cuda_handles, "'"));
  }
  cuda_options.staging_ring_bytes = options.staging_ring_bytes;
  cuda_options.staging_slots = options.staging_slots;
  cuda_options.staging_copy_streams = options.staging_copy_streams;
  cuda_options.staging_waits = options.staging_waits;
  cuda_options.scales_from_slots = options.scales_from_slots;
  cuda_options.park_per_tensor = options.park_per_tensor;
  cuda_options.park_rest_in_arena = options.park_rest_in_arena;
  cuda_options.pin_sources = options.pin_sources;
  cuda_options.nccl_min_ranks = options.nccl_min_ranks;
  cuda_options.pinned = options.pinned;
  auto backend = cuda::CudaBackend::Create(cuda_options);
  if (!backend.ok()) return backend.status();
  return std::unique_ptr<DeviceBackend>(std::move(*backend));
}
#endif

}  // namespace

absl::StatusOr<std::unique_ptr<DeviceBackend>> CreateBackend(const BackendOptions& options) {
  if (options.backend == "host") return CreateHost(options);
  if (options.backend != "cuda" && options.backend != "auto") {
    return absl::InvalidArgumentError(absl::StrCat("--backend must be host, cuda or auto, not '", options.backend, "'"));
  }
#ifdef WEIGHTD_HAVE_CUDA
  if (options.backend == "cuda" || cuda::VisibleDeviceCount() > 0) return CreateCuda(options);
  return CreateHost(options);
#else
  if (options.backend == "cuda") {
    return absl::FailedPreconditionError("--backend=cuda: this build has no CUDA support (nvcc was not found)");
  }
  return CreateHost(options);
#endif
}

}  // namespace weightd
