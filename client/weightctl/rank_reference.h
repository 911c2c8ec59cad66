// What `weightctl verify` expects one tensor-parallel rank to hold for one
// checkpoint tensor: the CPU reference's result for the whole tensor, sliced
// as the daemon's sharding rules cut it (scale scope tensor, and replicated
// tensors), or the reference applied to the rank's slice alone (scope shard).
// With tp 1 it is the whole tensor's reference. Thread-safe (pure function).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "services/load/output_layout.h"
#include "services/load/sharding_rules.h"
#include "services/load/tensor_split.h"
#include "services/safetensors/header.h"

namespace weightd::ctl {

struct RankReferenceOptions {
  uint32_t tp = 1;
  uint32_t rank = 0;
  v1::ScaleScope scope = v1::SCALE_SCOPE_TENSOR;
  kernels::NonFinitePolicy policy = kernels::NonFinitePolicy::kFail;
  AttentionHeads heads;
};

struct ExpectedOutput {
  OutputSpec spec;    // name, dtype, the rank's shape, size
  std::string bytes;  // spec.size bytes
};

// The tensor's outputs on the rank: its data, then its scale when quantized.
// INVALID_ARGUMENT as a load would refuse the tensor (split, non-finite value).
absl::StatusOr<std::vector<ExpectedOutput>> RankReference(const OutputLayout& layout, const ShardingRules& rules,
                                                          const RankReferenceOptions& options,
                                                          const safetensors::TensorHeader& tensor,
                                                          const uint8_t* bytes);

}  // namespace weightd::ctl
