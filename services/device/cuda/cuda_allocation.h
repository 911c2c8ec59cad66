// Device memory of the CUDA backend, exportable to workers: a VMM allocation
// (cuMemCreate with a POSIX file-descriptor handle, mapped into one virtual range)
// by default, or a cudaMalloc block with a legacy IPC handle.
// Thread-safe: immutable after creation; the destructor frees the memory (a
// worker's import of a VMM handle keeps the physical memory alive on its own).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "base/unique_fd.h"
#include "services/device/device_backend.h"

namespace weightd::cuda {

enum class HandleKind { kVmm, kLegacyIpc };

class CudaAllocation : public DeviceAllocation {
 public:
  // `bytes` must be a multiple of VmmGranularity(device) for kVmm.
  static absl::StatusOr<std::unique_ptr<CudaAllocation>> Create(int device, uint64_t bytes, HandleKind kind);
  ~CudaAllocation() override;

  int device() const override { return device_; }
  uint64_t size() const override { return size_; }
  v1::HandleType handle_type() const override;
  int export_fd(bool /*writable*/ = false) const override { return fd_.get(); }
  std::string ipc_handle() const override { return ipc_handle_; }
  uint8_t* device_pointer() const { return pointer_; }

 private:
  CudaAllocation(int device, uint64_t size, HandleKind kind) : device_(device), size_(size), kind_(kind) {}

  int device_;
  uint64_t size_;
  HandleKind kind_;
  uint8_t* pointer_ = nullptr;
  unsigned long long vmm_handle_ = 0;
  UniqueFd fd_;
  std::string ipc_handle_;
};

// The VMM allocation granularity of `device` (2 MiB on current GPUs).
absl::StatusOr<uint64_t> VmmGranularity(int device);

}  // namespace weightd::cuda
