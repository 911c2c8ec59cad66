#include "services/device/cuda/cuda_backend.h"

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "services/device/accounting.h"
#include "services/device/cuda/cuda_check.h"
#include "services/device/in_process_collective.h"
#include "services/device/parked_tensor.h"
#include "services/device/ring_size.h"
#ifdef WEIGHTD_HAVE_NCCL
#include "services/device/cuda/nccl_collective.h"
#endif

namespace weightd::cuda {

int VisibleDeviceCount() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

absl::StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(const CudaBackendOptions& options) {
  int count = VisibleDeviceCount();
  if (count == 0) return absl::FailedPreconditionError("--backend=cuda: no CUDA device is visible");
  std::unique_ptr<CudaBackend> backend(new CudaBackend(options));
  backend->devices_.resize(static_cast<size_t>(count));
  // No size given: rings that stay in the last-level cache (services/device/ring_size.h).
  const uint64_t cache_bytes = LastLevelCacheBytes();
  const uint64_t ring_bytes = options.staging_ring_bytes > 0
                                  ? options.staging_ring_bytes
                                  : AutoStagingRingBytes(cache_bytes, options.staging_slots, count);
  LogEvent(LogLevel::kInfo, "staging_ring_sized",
           {{"ring_bytes", ring_bytes}, {"slots", options.staging_slots}, {"devices", count},
            {"auto", options.staging_ring_bytes == 0}, {"last_level_cache_bytes", cache_bytes}});
  for (int d = 0; d < count; ++d) {
    Device& device = backend->devices_[d];
    WEIGHTD_CUDA_CHECK(cudaSetDevice(d));
    WEIGHTD_CUDA_CHECK(cudaFree(nullptr));  // create the context now, not inside the first load
    size_t free_bytes = 0, total_bytes = 0;
    WEIGHTD_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    device.capacity = total_bytes;
    if (options.handles == HandleKind::kVmm) {
      auto granularity = VmmGranularity(d);
      if (!granularity.ok()) return granularity.status();
      device.granularity = *granularity;
    } else {
      device.granularity = 256;
    }
    auto ring = StagingRing::Create(d, ring_bytes, options.staging_slots, options.pinned,
                                    options.staging_copy_streams, options.staging_waits);
    if (!ring.ok()) return ring.status();
    device.ring = std::move(*ring);
  }
  backend->pin_sources_ = options.pin_sources && PinnedSources::Supported();
  return backend;
}

absl::StatusOr<std::unique_ptr<DeviceAllocation>> CudaBackend::Allocate(int device, uint64_t bytes,
                                                                        const std::string& label) {
  if (device < 0 || device >= device_count()) {
    return absl::InvalidArgumentError(absl::StrCat("no CUDA device ", device, " for ", label));
  }
  LogDriverMemory(device, "before_allocation", label);
  auto allocation = CudaAllocation::Create(device, RoundUp(bytes, devices_[device].granularity), options_.handles);
  if (!allocation.ok()) {
    return absl::Status(allocation.status().code(),
                        absl::StrCat(label, ": device ", device, ": ", allocation.status().message()));
  }
  return std::unique_ptr<DeviceAllocation>(std::move(*allocation));
}

absl::StatusOr<uint8_t*> CudaBackend::Region(DeviceAllocation& alloc, uint64_t offset, uint64_t size) const {
  if (offset > alloc.size() || size > alloc.size() - offset) {
    return absl::OutOfRangeError(absl::StrCat("bytes [", offset, ", ", offset + size, ") outside an allocation of ",
                                              alloc.size()));
  }
  return static_cast<CudaAllocation&>(alloc).device_pointer() + offset;
}

absl::Status CudaBackend::Write(DeviceAllocation& alloc, uint64_t offset, std::string_view bytes) {
  auto dst = Region(alloc, offset, bytes.size());
  if (!dst.ok()) return dst.status();
  return devices_[alloc.device()].ring->Write(*dst, bytes, pinned_sources_.Find(bytes.data(), bytes.size()));
}

absl::Status CudaBackend::Quantize(DeviceAllocation& alloc, uint64_t offset, kernels::DType dtype, const void* src,
                                   const kernels::Tiling& tiling, const float* scales) {
  auto dst = Region(alloc, offset, static_cast<uint64_t>(tiling.rows) * tiling.cols);
  if (!dst.ok()) return dst.status();
  const uint64_t source_bytes = static_cast<uint64_t>(tiling.rows) * tiling.cols * kernels::DTypeSize(dtype);
  return devices_[alloc.device()].ring->Quantize(*dst, dtype, src, tiling, scales,
                                                 pinned_sources_.Find(src, source_bytes));
}

absl::Status CudaBackend::QuantizeTakingScales(DeviceAllocation& alloc, uint64_t offset, kernels::Scheme scheme,
                                               kernels::DType dtype, const void* src, const kernels::Tiling& tiling,
                                               kernels::NonFinitePolicy policy, float* scales) {
  auto dst = Region(alloc, offset, static_cast<uint64_t>(tiling.rows) * tiling.cols);
  if (!dst.ok()) return dst.status();
  const uint64_t source_bytes = static_cast<uint64_t>(tiling.rows) * tiling.cols * kernels::DTypeSize(dtype);
  return devices_[alloc.device()].ring->QuantizeTakingScales(*dst, scheme, dtype, src, tiling, policy, scales,
                                                             pinned_sources_.Find(src, source_bytes));
}

absl::StatusOr<float> CudaBackend::WriteTakingAmax(DeviceAllocation& alloc, uint64_t offset, kernels::DType dtype,
                                                   std::string_view bytes, kernels::NonFinitePolicy policy) {
  auto dst = Region(alloc, offset, bytes.size());
  if (!dst.ok()) return dst.status();
  return devices_[alloc.device()].ring->WriteTakingAmax(*dst, bytes, dtype, policy,
                                                        pinned_sources_.Find(bytes.data(), bytes.size()));
}

absl::Status CudaBackend::QuantizeStored(DeviceAllocation& alloc, uint64_t stored, uint64_t to, kernels::DType dtype,
                                         const kernels::Tiling& tiling, float scale) {
  const uint64_t elements = static_cast<uint64_t>(tiling.rows) * tiling.cols;
  WEIGHTD_RETURN_IF_ERROR(CheckStoredAndCodes(stored, to, elements, kernels::DTypeSize(dtype)));
  auto source = Region(alloc, stored, elements * kernels::DTypeSize(dtype));
  if (!source.ok()) return source.status();
  auto out = Region(alloc, to, elements);
  if (!out.ok()) return out.status();
  return devices_[alloc.device()].ring->QuantizeStored(*source, *out, dtype, tiling, scale);
}

std::function<bool()> CudaBackend::StoredQuantizedMarker(int device) {
  if (device < 0 || static_cast<size_t>(device) >= devices_.size()) return nullptr;
  return devices_[device].ring->KernelsMarker();
}

std::unique_ptr<SourcePin> CudaBackend::PinSource(const void* data, uint64_t size) {
  if (!pin_sources_) return nullptr;
  // Any device may copy from it (tensor parallelism): every ring's copies are waited for.
  return pinned_sources_.Pin(data, size, [this] {
    for (Device& d : devices_) d.ring->FenceCopies();
  });
}

absl::Status CudaBackend::Synchronize(int device) {
  absl::Status status = devices_[device].ring->Synchronize();
  const StagingRing::Stats stats = devices_[device].ring->TakeStats();
  LogEvent(LogLevel::kDebug, "staging_ring",
           {{"device", device}, {"chunks", stats.chunks}, {"h2d_bytes", stats.h2d_bytes},
            {"in_place_bytes", stats.in_place_bytes}, {"scaled_chunks", stats.scaled_chunks},
            {"wait_seconds", stats.wait_seconds},
            {"fill_seconds", stats.fill_seconds}, {"enqueue_seconds", stats.enqueue_seconds}});
  LogDriverMemory(device, "load_landed", "");
  return status;
}

void CudaBackend::LogDriverMemory(int device, const char* phase, const std::string& label) const {
  auto [free_bytes, total_bytes] = DriverMemoryInfo(device);
  LogEvent(LogLevel::kInfo, "driver_memory",
           {{"device", device}, {"phase", phase}, {"what", label}, {"free_bytes", free_bytes},
            {"used_bytes", total_bytes - free_bytes}, {"total_bytes", total_bytes}});
}

absl::Status CudaBackend::Read(DeviceAllocation& alloc, uint64_t offset, uint64_t size, void* out) {
  auto src = Region(alloc, offset, size);
  if (!src.ok()) return src.status();
  // Writes of this device still in the ring land first (a relay reads what it is
  // receiving); no log line here: a peer reads a model a megabyte at a time.
  WEIGHTD_RETURN_IF_ERROR(devices_[alloc.device()].ring->Synchronize());
  WEIGHTD_CUDA_CHECK(cudaMemcpy(out, *src, size, cudaMemcpyDeviceToHost));
  return absl::OkStatus();
}

std::pair<uint64_t, uint64_t> CudaBackend::DriverMemoryInfo(int device) const {
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaSetDevice(device) != cudaSuccess || cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
    cudaGetLastError();
  }
  return {free_bytes, total_bytes};
}

absl::StatusOr<std::shared_ptr<Collective>> CudaBackend::GroupCollective(const std::vector<int>& devices) {
  for (int d : devices) {
    if (d < 0 || d >= device_count()) return absl::InvalidArgumentError(absl::StrCat("no CUDA device ", d));
  }
  std::lock_guard<std::mutex> lock(collectives_mu_);
  std::shared_ptr<Collective>& group = collectives_[devices];
  if (group == nullptr) {
#ifdef WEIGHTD_HAVE_NCCL
    if (static_cast<int>(devices.size()) >= options_.nccl_min_ranks) {
      // NCCL's own buffers are device memory weightd holds: logged per device.
      std::vector<uint64_t> free_before;
      for (int d : devices) free_before.push_back(DriverMemoryInfo(d).first);
      auto nccl = NcclCollective::Create(devices);
      if (!nccl.ok()) {
        collectives_.erase(devices);
        return nccl.status();
      }
      // Its buffers stay as long as the backend does: reserved in the accounting for good.
      // (Measured by the driver: an allocation made by a concurrent load would be counted too.)
      std::vector<uint64_t> taken(devices_.size(), 0);
      for (size_t i = 0; i < devices.size(); ++i) {
        const uint64_t free_after = DriverMemoryInfo(devices[i]).first;
        taken[devices[i]] = free_before[i] > free_after ? free_before[i] - free_after : 0;
        LogEvent(LogLevel::kInfo, "nccl_communicator",
                 {{"ranks", devices.size()}, {"device", devices[i]}, {"device_bytes", taken[devices[i]]}});
      }
      if (accounting_ != nullptr) {
        absl::Status fits = accounting_->Reserve(taken, "an NCCL communicator");
        if (!fits.ok()) {
          collectives_.erase(devices);
          return fits;
        }
      }
      group = std::move(*nccl);
    }
#endif
    if (group == nullptr) group = std::make_shared<InProcessCollective>(*this, static_cast<int>(devices.size()));
  }
  return group;
}

}  // namespace weightd::cuda
