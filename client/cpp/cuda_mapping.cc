#include "client/cpp/cuda_mapping.h"

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/device/cuda/cuda_check.h"
#include "services/device/cuda/driver_api.h"

namespace weightd::client {

absl::StatusOr<CudaMapping> CudaMapping::Import(const v1::Allocation& allocation, int fd, int device) {
  CudaMapping m;
  m.device_ = device;
  m.size_ = allocation.size();
  WEIGHTD_CUDA_CHECK(cudaSetDevice(device));
  if (allocation.handle_type() == v1::HANDLE_TYPE_CUDA_IPC) {
    cudaIpcMemHandle_t handle;
    if (allocation.cuda_ipc_handle().size() != sizeof(handle)) {
      return absl::DataLossError(absl::StrCat("allocation ", allocation.id(), " has an IPC handle of ",
                                              allocation.cuda_ipc_handle().size(), " bytes"));
    }
    std::memcpy(&handle, allocation.cuda_ipc_handle().data(), sizeof(handle));
    WEIGHTD_CUDA_CHECK(cudaIpcOpenMemHandle(&m.pointer_, handle, cudaIpcMemLazyEnablePeerAccess));
    m.ipc_ = true;
    return m;
  }
  if (allocation.handle_type() != v1::HANDLE_TYPE_CUDA_VMM_FD) {
    return absl::InvalidArgumentError(absl::StrCat("allocation ", allocation.id(), " is not GPU memory"));
  }
  auto api = cuda::Driver();
  if (!api.ok()) return api.status();
  const cuda::DriverApi& cu = **api;
  CUmemGenericAllocationHandle handle = 0;
  WEIGHTD_CU_CHECK(cu.cuMemImportFromShareableHandle(&handle, reinterpret_cast<void*>(static_cast<intptr_t>(fd)),
                                                     CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR));
  m.vmm_handle_ = handle;
  CUdeviceptr address = 0;
  WEIGHTD_CU_CHECK(cu.cuMemAddressReserve(&address, m.size_, 0, 0, 0));
  m.pointer_ = reinterpret_cast<void*>(address);
  WEIGHTD_CU_CHECK(cu.cuMemMap(address, m.size_, 0, handle, 0));
  CUmemAccessDesc access{};
  access.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  access.location.id = device;
  access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  WEIGHTD_CU_CHECK(cu.cuMemSetAccess(address, m.size_, &access, 1));
  return m;
}

CudaMapping::CudaMapping(CudaMapping&& other) noexcept
    : device_(other.device_),
      pointer_(std::exchange(other.pointer_, nullptr)),
      size_(other.size_),
      vmm_handle_(std::exchange(other.vmm_handle_, 0)),
      ipc_(other.ipc_) {}

CudaMapping::~CudaMapping() {
  if (pointer_ == nullptr && vmm_handle_ == 0) return;
  cudaSetDevice(device_);
  if (ipc_) {
    if (pointer_ != nullptr) cudaIpcCloseMemHandle(pointer_);
    return;
  }
  auto api = cuda::Driver();
  if (!api.ok()) return;
  CUdeviceptr address = reinterpret_cast<CUdeviceptr>(pointer_);
  if (address != 0) {
    (*api)->cuMemUnmap(address, size_);
    (*api)->cuMemAddressFree(address, size_);
  }
  if (vmm_handle_ != 0) (*api)->cuMemRelease(vmm_handle_);
}

}  // namespace weightd::client
