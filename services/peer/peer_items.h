// What a peer serves: a model as an FP8 checkpoint holds it, cut into items in
// the order of its shards' tensors. A stored tensor is one item (its bytes as
// they came); a quantized tensor is two, its E4M3 codes (the whole tensor,
// row-major) and its scales (F32 over the whole tensor's tile grid). Both the
// serving and the receiving daemon derive the list from the checkpoint's headers
// and the quantization alone, so it does not depend on either side's split.
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/quantize.h"
#include "services/load/planner.h"
#include "weightd/v1/loader.pb.h"

namespace weightd {

enum class PeerItemKind { kStored, kCodes, kScales };

struct PeerItemRef {
  PeerItemKind kind = PeerItemKind::kStored;
  size_t shard = 0;   // the source tensor: shards[shard].header.tensors[tensor]
  size_t tensor = 0;
  std::string name;   // as an FP8 checkpoint names it
  uint64_t size = 0;  // bytes
  kernels::Tiling whole;  // codes and scales: the whole tensor's tiling
};

// INVALID_ARGUMENT for an ignore pattern that does not compile.
absl::StatusOr<std::vector<PeerItemRef>> PeerItemsOf(const std::vector<ShardInput>& shards,
                                                     const v1::Quantization& quantization);

// FAILED_PRECONDITION where the plan quantizes a tensor the items store, or the
// other way round (the plan and the items must come from the same quantization).
absl::Status CheckItemsMatchPlan(const std::vector<PeerItemRef>& items, const LoadPlan& plan);

// The first item of each source tensor, and items.size() at the end: streams
// split a model at these boundaries, so one stream carries a tensor whole.
std::vector<uint32_t> TensorBoundaries(const std::vector<PeerItemRef>& items);

}  // namespace weightd
