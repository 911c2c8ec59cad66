// Writes a synthetic Llama checkpoint (config.json plus one or more safetensors
// shards and, when sharded, model.safetensors.index.json) to a directory, in memory
// bounded by one 16 MiB fill buffer whatever the model size. Stateless; calls on
// different directories may run concurrently.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bench/gen/llama_config.h"
#include "kernels/dtype.h"

namespace weightd::bench {

struct GenOptions {
  LlamaConfig config;
  std::string out_dir;
  int shards = 1;
  kernels::DType dtype = kernels::DType::kBF16;
  // Tensor i gets BF16, F16, F32 in turn (i mod 3); config.json still says bfloat16.
  bool mixed_dtypes = false;
  uint64_t seed = 0;
  // FastTensorFill instead of FillTensor: other values, same distribution, memcpy speed.
  bool fast_fill = false;
};

// Largest piece of a tensor filled and written at once.
inline constexpr size_t kFillPieceBytes = size_t{16} << 20;

struct PlannedTensor {
  TensorDesc desc;
  kernels::DType dtype;
  int shard;             // index into CheckpointPlan::files
  uint64_t byte_offset;  // within the shard's data section
  uint64_t byte_size;
};

struct CheckpointPlan {
  std::vector<PlannedTensor> tensors;  // in LlamaTensors order
  std::vector<std::string> files;      // shard file names, without directory
  uint64_t total_bytes = 0;            // tensor bytes only, as index.json's total_size
};

// Which dtype, shard and offset each tensor gets. Shards hold consecutive tensors,
// balanced by bytes, none empty. INVALID_ARGUMENT for a bad config, shards < 1,
// more shards than tensors, or a dtype other than BF16/F16/F32.
absl::StatusOr<CheckpointPlan> PlanCheckpoint(const GenOptions& options);

// Creates out_dir if needed and writes the checkpoint PlanCheckpoint describes.
// Each file is written under a temporary name and renamed when complete.
absl::Status WriteCheckpoint(const GenOptions& options);

}  // namespace weightd::bench
