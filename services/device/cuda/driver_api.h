// The CUDA driver functions weightd uses (VMM and IPC), resolved at run time
// through the runtime's entry-point query, so that the binaries do not link
// libcuda and still start on machines without a driver (the host backend).
// Thread-safe: resolved once, then read-only.
#pragma once

#include <cuda.h>

#include "absl/status/statusor.h"

namespace weightd::cuda {

struct DriverApi {
  CUresult (*cuMemCreate)(CUmemGenericAllocationHandle*, size_t, const CUmemAllocationProp*, unsigned long long);
  CUresult (*cuMemRelease)(CUmemGenericAllocationHandle);
  CUresult (*cuMemAddressReserve)(CUdeviceptr*, size_t, size_t, CUdeviceptr, unsigned long long);
  CUresult (*cuMemAddressFree)(CUdeviceptr, size_t);
  CUresult (*cuMemMap)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle, unsigned long long);
  CUresult (*cuMemUnmap)(CUdeviceptr, size_t);
  CUresult (*cuMemSetAccess)(CUdeviceptr, size_t, const CUmemAccessDesc*, size_t);
  CUresult (*cuMemGetAllocationGranularity)(size_t*, const CUmemAllocationProp*, CUmemAllocationGranularity_flags);
  CUresult (*cuMemExportToShareableHandle)(void*, CUmemGenericAllocationHandle, CUmemAllocationHandleType,
                                           unsigned long long);
  CUresult (*cuMemImportFromShareableHandle)(CUmemGenericAllocationHandle*, void*, CUmemAllocationHandleType);
  CUresult (*cuGetErrorName)(CUresult, const char**);
};

// FAILED_PRECONDITION when the driver lacks a function.
absl::StatusOr<const DriverApi*> Driver();

}  // namespace weightd::cuda
