// The part of one checkpoint tensor each tensor-parallel rank holds: a range
// of one dimension, or the whole tensor (replicated). Decided from the tensor's
// name, shape and rule, the attention heads of config.json (grouped-query
// attention) and the alignment the quantization scheme needs. Pure functions;
// thread-safe.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "services/load/sharding_rules.h"

namespace weightd {

// From config.json; 0 where it does not say (or there is none).
struct AttentionHeads {
  int64_t heads = 0;     // num_attention_heads
  int64_t kv_heads = 0;  // num_key_value_heads, else num_attention_heads
};

// INVALID_ARGUMENT when `config_json` is not empty and not a JSON object, or
// gives a head count that is not a positive integer.
absl::StatusOr<AttentionHeads> AttentionHeadsFromConfig(std::string_view config_json);

struct TensorSplit {
  SplitKind kind = SplitKind::kReplicate;
  int dim = -1;                 // -1: every rank holds the whole tensor
  std::vector<int64_t> begin;   // per rank, along `dim`
  std::vector<int64_t> length;  // per rank, along `dim`
  bool replicated() const { return dim < 0; }
  std::vector<int64_t> SliceShape(const std::vector<int64_t>& shape, size_t rank) const;
};

// Where one rank's slice lies in the row-major bytes of the whole tensor:
// `segments` runs of `segment_bytes`, the first at `first`, each `stride` after
// the one before. One segment when the slice is a single byte range.
struct SliceBytes {
  uint64_t first = 0;
  uint64_t segments = 1;
  uint64_t segment_bytes = 0;
  uint64_t stride = 0;
  bool contiguous() const { return segments == 1; }
  uint64_t size() const { return segments * segment_bytes; }
};

SliceBytes SliceBytesOf(const TensorSplit& split, size_t rank, const std::vector<int64_t>& shape,
                        size_t element_size);

// The bytes of a slice that lie in bytes [lo, hi) of the whole tensor: bytes
// [local_begin, local_end) of the slice (one run, since the slice's segments
// are consecutive in it), made of one piece per segment met.
struct SliceWindow {
  uint64_t local_begin = 0, local_end = 0;
  bool empty() const { return local_end <= local_begin; }
};

// Calls piece(whole_offset, local_offset, n) for each piece, in order, and
// returns the window (empty when the slice has no byte in [lo, hi)).
template <typename Piece>
SliceWindow ForEachPieceIn(const SliceBytes& slice, uint64_t lo, uint64_t hi, Piece&& piece) {
  SliceWindow window;
  if (lo >= hi || slice.segment_bytes == 0) return window;
  uint64_t k = 0;  // the first segment that can reach lo (one segment: the whole slice)
  if (slice.segments > 1 && lo > slice.first && slice.stride > 0) {
    k = std::min<uint64_t>((lo - slice.first) / slice.stride, slice.segments - 1);
  }
  bool first = true;
  for (; k < slice.segments; ++k) {
    const uint64_t start = slice.first + k * slice.stride;
    if (start >= hi) break;
    const uint64_t a = std::max(lo, start), b = std::min(hi, start + slice.segment_bytes);
    if (a >= b) continue;
    const uint64_t local = k * slice.segment_bytes + (a - start);
    if (first) window.local_begin = local;
    first = false;
    window.local_end = local + (b - a);
    piece(a, local, b - a);
  }
  return window;
}

// Copies the slice's bytes out of the whole tensor at `src` into `dst`
// (slice.size() bytes, row-major in the slice's shape).
void GatherSlice(const SliceBytes& slice, const char* src, char* dst);

// How `name` of `shape` is cut across `tp` ranks under `rule`:
// - column and vocab cut dim 0, row cuts dim 1 (a 1-D or 0-D tensor under a row
//   rule, and any 0-D tensor, is replicated);
// - k_proj / v_proj under a column rule follow the key/value heads: with fewer
//   heads than ranks, tp / kv_heads consecutive ranks share one head (rank r
//   holds head r * kv_heads / tp), as vLLM's QKVParallelLinear does;
// - every split point must be a multiple of `align` (128 for block-scaled tensors).
// INVALID_ARGUMENT naming the tensor, its shape and the dimension when a part
// would be uneven (without allow_uneven), empty, or off the alignment, or the
// heads do not fit tp.
absl::StatusOr<TensorSplit> SplitTensor(const std::string& name, const std::vector<int64_t>& shape, SplitRule rule,
                                        uint32_t tp, const AttentionHeads& heads, int64_t align);

}  // namespace weightd
