#include "services/device/cuda/driver_api.h"

#include <cuda_runtime.h>

#include <mutex>

#include "absl/strings/str_cat.h"
#include "services/device/cuda/cuda_check.h"

namespace weightd::cuda {
namespace {

constexpr int kDriverVersion = 12000;

template <typename Fn>
absl::Status Resolve(const char* symbol, Fn*& fn) {
  void* address = nullptr;
  cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
  cudaError_t error = cudaGetDriverEntryPointByVersion(symbol, &address, kDriverVersion, cudaEnableDefault, &found);
  if (error != cudaSuccess || found != cudaDriverEntryPointSuccess || address == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("the CUDA driver has no ", symbol, " (", cudaGetErrorName(error), ")"));
  }
  fn = reinterpret_cast<Fn*>(address);
  return absl::OkStatus();
}

absl::StatusOr<DriverApi> Load() {
  DriverApi api{};
  for (absl::Status s : {Resolve("cuMemCreate", api.cuMemCreate), Resolve("cuMemRelease", api.cuMemRelease),
                         Resolve("cuMemAddressReserve", api.cuMemAddressReserve),
                         Resolve("cuMemAddressFree", api.cuMemAddressFree), Resolve("cuMemMap", api.cuMemMap),
                         Resolve("cuMemUnmap", api.cuMemUnmap), Resolve("cuMemSetAccess", api.cuMemSetAccess),
                         Resolve("cuMemGetAllocationGranularity", api.cuMemGetAllocationGranularity),
                         Resolve("cuMemExportToShareableHandle", api.cuMemExportToShareableHandle),
                         Resolve("cuMemImportFromShareableHandle", api.cuMemImportFromShareableHandle),
                         Resolve("cuGetErrorName", api.cuGetErrorName)}) {
    if (!s.ok()) return s;
  }
  return api;
}

}  // namespace

absl::StatusOr<const DriverApi*> Driver() {
  static const absl::StatusOr<DriverApi>* api = new absl::StatusOr<DriverApi>(Load());
  if (!api->ok()) return api->status();
  return &**api;
}

absl::Status DriverError(CUresult result, const char* call, const char* file, int line) {
  const char* name = "unknown CUresult";
  auto api = Driver();
  if (api.ok()) (*api)->cuGetErrorName(result, &name);
  absl::StatusCode code =
      result == CUDA_ERROR_OUT_OF_MEMORY ? absl::StatusCode::kResourceExhausted : absl::StatusCode::kInternal;
  return absl::Status(code, absl::StrCat(call, ": ", name, " at ", file, ":", line));
}

}  // namespace weightd::cuda
