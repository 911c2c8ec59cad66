// Turns the shard headers of a checkpoint into an exact placement: which output
// tensors each rank holds, at which offsets of its arena, and what the pipeline
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
#include "services/safetensors/header.h"
#include "weightd/v1/loader.pb.h"

namespace weightd {

// Every output tensor starts on this boundary (vectorized device access).
inline constexpr uint64_t kTensorAlignment = 256;

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
};

enum class TaskKind { kStore, kQuantize };

// What happens to one source tensor. Indices point into RankPlan::tensors.
struct TensorTask {
  TaskKind kind = TaskKind::kStore;
  size_t output = 0;
  // kQuantize only:
  size_t scale = 0;
  kernels::Scheme scheme = kernels::Scheme::kPerTensor;
  kernels::Tiling tiling;
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
  // Arena bytes per device index (for admission), sized to cover every device used.
  std::vector<uint64_t> DeviceBytes() const;
};

struct PlanOptions {
  v1::Scheme scheme = v1::SCHEME_PER_TENSOR;
  std::vector<std::string> ignore;
  std::vector<int> devices;                 // one per rank
  std::vector<uint64_t> device_granularity;  // indexed by device
};

// Output names, dtypes and shapes come from OutputLayout. INVALID_ARGUMENT for
// duplicate tensor names across shards or output name clashes; UNIMPLEMENTED for
// tensor parallelism (ValidateLoadSpec refuses both bad schemes and tp_size > 1
// before a load starts; these checks only guard direct callers).
absl::StatusOr<LoadPlan> PlanLoad(const std::vector<ShardInput>& shards, const PlanOptions& options);

}  // namespace weightd
