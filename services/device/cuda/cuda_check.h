// One checking macro per CUDA API family, turning an error code into an
// absl::Status that names the call, the error and file:line.
// Thread-safe (stateless).
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace weightd::cuda {

inline absl::Status CudaError(cudaError_t error, const char* call, const char* file, int line) {
  absl::StatusCode code = error == cudaErrorMemoryAllocation ? absl::StatusCode::kResourceExhausted
                                                             : absl::StatusCode::kInternal;
  return absl::Status(code, absl::StrCat(call, ": ", cudaGetErrorName(error), " (", cudaGetErrorString(error), ") at ",
                                         file, ":", line));
}

absl::Status DriverError(CUresult result, const char* call, const char* file, int line);

}  // namespace weightd::cuda

#define WEIGHTD_CUDA_CHECK(expr)                                                      \
  do {                                                                                \
    cudaError_t weightd_cuda_error_ = (expr);                                         \
    if (weightd_cuda_error_ != cudaSuccess) {                                         \
      return ::weightd::cuda::CudaError(weightd_cuda_error_, #expr, __FILE__, __LINE__); \
    }                                                                                 \
  } while (0)

#define WEIGHTD_CU_CHECK(expr)                                                         \
  do {                                                                                 \
    CUresult weightd_cu_result_ = (expr);                                              \
    if (weightd_cu_result_ != CUDA_SUCCESS) {                                          \
      return ::weightd::cuda::DriverError(weightd_cu_result_, #expr, __FILE__, __LINE__); \
    }                                                                                  \
  } while (0)
