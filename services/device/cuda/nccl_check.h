// The checking macro of the NCCL API family: an error code becomes an
// absl::Status naming the call, NCCL's message and file:line.
// Thread-safe (stateless).
#pragma once

#include <nccl.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace weightd::cuda {

inline absl::Status NcclError(ncclResult_t result, const char* call, const char* file, int line) {
  return absl::InternalError(absl::StrCat(call, ": ", ncclGetErrorString(result), " at ", file, ":", line));
}

}  // namespace weightd::cuda

#define WEIGHTD_NCCL_CHECK(expr)                                                          \
  do {                                                                                    \
    ncclResult_t weightd_nccl_result_ = (expr);                                           \
    if (weightd_nccl_result_ != ncclSuccess) {                                            \
      return ::weightd::cuda::NcclError(weightd_nccl_result_, #expr, __FILE__, __LINE__); \
    }                                                                                     \
  } while (0)
