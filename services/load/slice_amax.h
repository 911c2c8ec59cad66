// The amax (max |x|) of a rank's slice of a tensor, read in place from the
// whole tensor on the host: what a rank contributes to the all-reduce of scale
// scope `tensor`. Spread over threads. Pure function; thread-safe.
#pragma once

#include <vector>

#include "absl/status/status.h"
#include "kernels/dtype.h"
#include "kernels/quantize.h"
#include "services/load/tensor_split.h"

namespace weightd {

// `per_segment` false: one amax over the whole slice (per-tensor); true: one per
// segment of the slice (per-channel of a row split: a segment is one row's part).
// Non-finite values as kernels::AbsMax treats them (INVALID_ARGUMENT under kFail).
absl::Status SliceAmax(kernels::DType dtype, const char* tensor, const SliceBytes& slice, bool per_segment,
                       kernels::NonFinitePolicy policy, std::vector<float>& amax);

}  // namespace weightd
