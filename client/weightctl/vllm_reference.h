// What `weightctl verify --layout vllm` expects one rank to hold: vLLM's
// parameters (services/load/engine_layout.h) built from the CPU reference,
// independently of the daemon's planner: each fused output is its parts'
// reference slices stacked in order (a per-tensor one quantized with the scale
// of the largest amax over the parts), each vocab tensor its rank's rows of the
// vLLM split followed by zero rows up to the padded size, every other tensor as
// RankReference gives it. Thread-safe (pure function).
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "client/weightctl/mapped_checkpoint.h"
#include "client/weightctl/rank_reference.h"

namespace weightd::ctl {

// INVALID_ARGUMENT as a load with layout vllm would refuse the checkpoint.
// `pad_vocab` false: vocab tensors as RankReference gives them (an FP8 checkpoint in
// vLLM's fused layout, which vLLM pads itself when it loads).
absl::StatusOr<std::vector<ExpectedOutput>> VllmRankReference(const OutputLayout& layout, const ShardingRules& rules,
                                                              const RankReferenceOptions& options,
                                                              const MappedCheckpoint& source, bool pad_vocab = true);

}  // namespace weightd::ctl
