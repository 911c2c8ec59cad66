#include "services/device/cuda/cuda_allocation.h"

#include "base/log.h"
#include "services/device/cuda/cuda_check.h"
#include "services/device/cuda/driver_api.h"

namespace weightd::cuda {
namespace {

CUmemAllocationProp VmmProperties(int device) {
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = device;
  prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
  return prop;
}

}  // namespace

absl::StatusOr<uint64_t> VmmGranularity(int device) {
  auto api = Driver();
  if (!api.ok()) return api.status();
  CUmemAllocationProp prop = VmmProperties(device);
  size_t granularity = 0;
  WEIGHTD_CU_CHECK((*api)->cuMemGetAllocationGranularity(&granularity, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
  return static_cast<uint64_t>(granularity);
}

absl::StatusOr<std::unique_ptr<CudaAllocation>> CudaAllocation::Create(int device, uint64_t bytes, HandleKind kind) {
  std::unique_ptr<CudaAllocation> a(new CudaAllocation(device, bytes, kind));
  WEIGHTD_CUDA_CHECK(cudaSetDevice(device));
  if (kind == HandleKind::kLegacyIpc) {
    void* pointer = nullptr;
    WEIGHTD_CUDA_CHECK(cudaMalloc(&pointer, bytes));
    a->pointer_ = static_cast<uint8_t*>(pointer);
    cudaIpcMemHandle_t handle;
    WEIGHTD_CUDA_CHECK(cudaIpcGetMemHandle(&handle, pointer));
    a->ipc_handle_.assign(reinterpret_cast<const char*>(&handle), sizeof(handle));
    return a;
  }
  auto api = Driver();
  if (!api.ok()) return api.status();
  const DriverApi& cu = **api;
  CUmemAllocationProp prop = VmmProperties(device);
  CUmemGenericAllocationHandle handle = 0;
  WEIGHTD_CU_CHECK(cu.cuMemCreate(&handle, bytes, &prop, 0));
  a->vmm_handle_ = handle;
  CUdeviceptr address = 0;
  WEIGHTD_CU_CHECK(cu.cuMemAddressReserve(&address, bytes, 0, 0, 0));
  a->pointer_ = reinterpret_cast<uint8_t*>(address);
  WEIGHTD_CU_CHECK(cu.cuMemMap(address, bytes, 0, handle, 0));
  CUmemAccessDesc access{};
  access.location = prop.location;
  access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  WEIGHTD_CU_CHECK(cu.cuMemSetAccess(address, bytes, &access, 1));
  int fd = -1;
  WEIGHTD_CU_CHECK(cu.cuMemExportToShareableHandle(&fd, handle, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0));
  a->fd_.reset(fd);
  return a;
}

CudaAllocation::~CudaAllocation() {
  cudaSetDevice(device_);
  if (kind_ == HandleKind::kLegacyIpc) {
    if (pointer_ != nullptr) cudaFree(pointer_);
    return;
  }
  auto api = Driver();
  if (!api.ok()) return;
  const DriverApi& cu = **api;
  CUdeviceptr address = reinterpret_cast<CUdeviceptr>(pointer_);
  // Copies or kernels of a failed load may still target the range: let them land first.
  if (address != 0) cudaDeviceSynchronize();
  // A partially built allocation unwinds as far as it got; unmap of an unmapped
  // range fails harmlessly.
  if (address != 0) {
    cu.cuMemUnmap(address, size_);
    cu.cuMemAddressFree(address, size_);
  }
  if (vmm_handle_ != 0) cu.cuMemRelease(vmm_handle_);
}

v1::HandleType CudaAllocation::handle_type() const {
  return kind_ == HandleKind::kVmm ? v1::HANDLE_TYPE_CUDA_VMM_FD : v1::HANDLE_TYPE_CUDA_IPC;
}

}  // namespace weightd::cuda
