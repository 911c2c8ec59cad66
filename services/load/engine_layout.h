// Layout vllm (placement.layout LAYOUT_VLLM): each rank holds vLLM's runtime
// parameters, so an engine uses them in place. Two rules on top of the
// checkpoint layout, both vLLM's own (vllm/model_executor/models/llama.py's
// stacked_params_mapping, vllm/model_executor/layers/vocab_parallel_embedding.py):
// - fusion: X.q_proj / X.k_proj / X.v_proj (weight, bias) become rows of
//   X.qkv_proj, and X.gate_proj / X.up_proj of X.gate_up_proj, each rank's slice
//   of each part in that order;
// - vocabulary padding: a tensor cut by the vocab rule (embed_tokens, lm_head)
//   has its rows padded to a multiple of 64, the padded rows split evenly over the
//   ranks, and the padding rows zero.
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "services/load/tensor_split.h"

namespace weightd {

inline constexpr int64_t kVllmVocabPadding = 64;

struct FusedPart {
  std::string fused;  // the fused parameter's name (X.qkv_proj.weight)
  size_t part = 0;    // position of this tensor's rows in it
  size_t parts = 0;   // how many tensors fill it
  const char* members = "";  // for messages: "q_proj, k_proj, v_proj"
};

// The fused parameter `name` belongs to under layout vllm; nullopt when it is
// not a part of one.
std::optional<FusedPart> VllmFusedPart(const std::string& name);
// The name of part `part` of the fused parameter that `fused_part` describes
// (the sibling tensors' names, for messages naming a missing one).
std::string VllmPartName(const std::string& name, const FusedPart& fused_part, size_t part);

// vLLM's split of a vocab tensor's dim 0 of `rows` over `tp` ranks: rank r
// holds padded rows [r * per, (r + 1) * per), per = RoundUp(rows, 64) / tp; its
// slice is the real rows among them (TensorSplit, whose lengths may be shorter
// than `per`). INVALID_ARGUMENT when tp does not divide the padded rows or a
// rank would hold only padding.
absl::StatusOr<TensorSplit> VllmVocabSplit(const std::string& name, const std::vector<int64_t>& shape, uint32_t tp);
int64_t VllmPaddedRowsPerRank(int64_t rows, uint32_t tp);

}  // namespace weightd
