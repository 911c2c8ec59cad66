// A worker's view of one GPU allocation of weightd: imports a VMM file
// descriptor (cuMemImportFromShareableHandle, mapped into one virtual range) or
// opens a legacy IPC handle, and gives the device pointer. The import holds the
// physical memory: it stays valid while this object lives, even if the daemon
// restarts. Built only where CUDA is available.
// Not thread-safe; move-only.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "weightd/v1/loader.pb.h"

namespace weightd::client {

class CudaMapping {
 public:
  // `fd`: the descriptor the handle socket passed for a CUDA_VMM_FD allocation
  // (borrowed; the import does not need it afterwards); ignored for CUDA_IPC.
  static absl::StatusOr<CudaMapping> Import(const v1::Allocation& allocation, int fd, int device);
  CudaMapping(CudaMapping&& other) noexcept;
  CudaMapping& operator=(CudaMapping&&) = delete;
  ~CudaMapping();

  void* device_pointer() const { return pointer_; }
  uint64_t size() const { return size_; }

 private:
  CudaMapping() = default;
  int device_ = 0;
  void* pointer_ = nullptr;
  uint64_t size_ = 0;
  unsigned long long vmm_handle_ = 0;
  bool ipc_ = false;
};

}  // namespace weightd::client
