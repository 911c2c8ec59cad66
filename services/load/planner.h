// Turns the shard headers of a checkpoint into an exact placement: which output
// tensors each rank holds (its slice of each checkpoint tensor, under the
// checkpoint's names), at which offsets of its arena, and what the pipeline
// does with each source tensor. Uses headers only, so admission is decided
// before any tensor byte is copied. Pure function; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/dtype.h"
#include "kernels/quantize.h"
#include "services/load/output_layout.h"
#include "services/load/tensor_split.h"
#include "services/safetensors/header.h"
#include "weightd/v1/loader.pb.h"

namespace weightd {

// Every output tensor starts on this boundary (vectorized device access).
inline constexpr uint64_t kTensorAlignment = 256;
// The most tensor bytes one plan takes (64 PiB): far beyond any node, and far enough
// below 2^64 that the plan's sums and offsets cannot wrap.
inline constexpr uint64_t kMaxPlanBytes = uint64_t{1} << 56;

struct ShardInput {
  std::string file;
  safetensors::ShardHeader header;
};

struct OutputTensor {
  std::string name;
  kernels::DType dtype;
  std::vector<int64_t> shape;
  uint64_t offset = 0;
  uint64_t size = 0;
  // A slice of the checkpoint tensor: `shape` is the slice's, along slice_dim from
  // slice_begin; full_shape is the checkpoint's. slice_dim -1: the whole tensor.
  int slice_dim = -1;
  int64_t slice_begin = 0;
  std::vector<int64_t> full_shape;
};

enum class TaskKind { kStore, kQuantize };

// One rank's part of a source tensor. Indices point into that rank's RankPlan::tensors.
struct RankPart {
  size_t output = 0;
  size_t scale = 0;        // kQuantize only
  kernels::Tiling tiling;  // of the rank's slice; kQuantize only
  // Layout vllm: where the slice's bytes begin in the output (a fused output's
  // rows of this part) and its scales in the scale output.
  uint64_t output_offset = 0;
  uint64_t scale_offset = 0;
  // Layout vllm's vocabulary padding: bytes [padding_offset, +padding_bytes) of
  // the output are written with zeros.
  uint64_t padding_offset = 0;
  uint64_t padding_bytes = 0;
};

// What happens to one source tensor.
struct TensorTask {
  TaskKind kind = TaskKind::kStore;
  // Rank 0's part, as parts[0] (what single-rank callers use).
  size_t output = 0;
  size_t scale = 0;
  kernels::Scheme scheme = kernels::Scheme::kPerTensor;  // kQuantize only
  kernels::Tiling tiling;
  // Tensor parallelism: every rank's part. A replicated tensor is written to
  // rank 0 only and broadcast to the others once every byte has landed.
  TensorSplit split;
  std::vector<RankPart> parts;
  // Scale scope `tensor` where a rank's scales depend on bytes other ranks hold
  // (per-tensor of a split tensor, per-channel of a row split): the ranks' tile
  // amax are all-reduced (max) before scaling.
  bool reduce_amax = false;
  // Layout vllm, per-tensor scheme: the index in LoadPlan::fused_scales of the
  // one scale this tensor shares with the other parts of its fused output; -1:
  // none. The scale is that of the largest amax over the parts (each part's
  // whole tensor under scale scope `tensor`, its rank slice under `shard`).
  int fused_scale = -1;
};

// One per-tensor scale shared by the parts of a fused output (layout vllm).
struct FusedScale {
  std::string name;  // the fused output's, for messages
  size_t parts = 0;
};

struct RankPlan {
  uint32_t rank = 0;
  int device = 0;
  uint64_t used_bytes = 0;   // end of the last tensor
  uint64_t arena_bytes = 0;  // used_bytes rounded to the device's granularity
  std::vector<OutputTensor> tensors;
};

struct LoadPlan {
  std::vector<RankPlan> ranks;
  std::vector<std::vector<TensorTask>> tasks;  // [shard][tensor index in the shard header]
  uint64_t source_bytes = 0;
  uint32_t source_tensors = 0;
  uint32_t quantized_tensors = 0;
  // Modules of 2-D weights left unquantized, in plan order, for quantization_config.
  std::vector<std::string> ignored_modules;
  std::vector<FusedScale> fused_scales;
  // Arena bytes per device index (for admission), sized to cover every device used.
  std::vector<uint64_t> DeviceBytes() const;
};

struct PlanOptions {
  v1::Scheme scheme = v1::SCHEME_PER_TENSOR;
  std::vector<std::string> ignore;
  std::vector<int> devices;                 // one per rank
  std::vector<uint64_t> device_granularity;  // indexed by device
  // Tensor parallelism (docs/tensor-parallel.md).
  google::protobuf::RepeatedPtrField<v1::ShardingRule> sharding_rules;
  v1::ScaleScope scale_scope = v1::SCALE_SCOPE_TENSOR;
  AttentionHeads heads;  // from config.json
  v1::Layout layout = v1::LAYOUT_CHECKPOINT;
};

// Output names, dtypes and shapes come from OutputLayout, slices from
// SplitTensor. INVALID_ARGUMENT for duplicate tensor names across shards, output
// name clashes, malformed sharding rules, tensors that do not split (the message
// of SplitTensor), and a checkpoint already in FP8 with tp_size > 1. Layout vllm
// (services/load/engine_layout.h) adds: a fused output missing a part, or whose
// parts differ in dtype, trailing dimensions, quantization or split, or (block
// scheme) whose parts' rows are off the 128-row grid; a quantized vocab tensor.
absl::StatusOr<LoadPlan> PlanLoad(const std::vector<ShardInput>& shards, const PlanOptions& options);

}  // namespace weightd
