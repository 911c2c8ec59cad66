// The amax (max |x|) of a rank's slice of a tensor, read in place from the
// whole tensor on the host: what a rank contributes to the all-reduce of scale
// scope `tensor`. Spread over threads. Pure function; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
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

// The amax of a whole tensor taken while it is gathered, piece by piece, in
// the same pass that copies each piece into the gathering buffer (with
// non-temporal stores, kernels/stream_copy.h), so placing it needs no second
// pass over the tensor. Exact: the same value SliceAmax finds.
// Not thread-safe.
class RunningAmax {
 public:
  explicit RunningAmax(kernels::DType dtype) : dtype_(dtype) {}
  // Copies `piece`, the tensor's bytes from `offset` on, to tensor + offset and
  // scans the whole elements it completes (an element split between two pieces
  // is read back from `tensor` once its last byte is there). Pieces come in
  // order: `offset` is the number of bytes copied so far. One that does not
  // (a gap, or bytes again) is still copied, and leaves no answer.
  void CopyAppend(char* tensor, uint64_t offset, std::string_view piece);
  // The amax of the elements scanned, when all of them were finite and the
  // dtype is BF16, F16 or F32; otherwise none (the caller takes the full path,
  // which applies the non-finite policy).
  std::optional<float> amax() const;
  uint64_t scanned() const { return scanned_; }

 private:
  kernels::DType dtype_;
  uint64_t scanned_ = 0;   // bytes, a whole number of elements
  uint64_t appended_ = 0;  // bytes copied
  float max_ = 0.0f;      // of the elements scanned
  bool finite_ = true;     // no NaN or Inf among them
  bool in_order_ = true;   // every piece began where the one before ended
};

}  // namespace weightd
