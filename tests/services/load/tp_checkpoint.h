// A small Llama-shaped checkpoint for tensor-parallel tests: one layer with
// grouped-query attention (8 heads, 2 key/value heads of 128), Qwen-style
// attention biases, a replicated quantized projection (q_a_proj), every
// dimension a multiple of 128 * 8 where it is split, BF16 / F16 / F32 tensors,
// and values whose magnitude grows along both dimensions (so every slice has
// its own amax) with some all-zero rows. Deterministic.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "kernels/dtype.h"

namespace weightd::testing {

struct TpTensor {
  std::string name;
  kernels::DType dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

struct TpCheckpoint {
  std::vector<TpTensor> tensors;
  std::string config_json;
  const TpTensor& Get(const std::string& name) const;
};

// `gate_rows` replaces the MLP's intermediate size (1024) for tests of uneven splits.
TpCheckpoint MakeTpCheckpoint(int64_t gate_rows = 1024);

// Writes config.json and the tensors in two shards (model-0000{1,2}-of-00002.safetensors) into `dir`.
absl::Status WriteTpCheckpoint(const TpCheckpoint& checkpoint, const std::string& dir);

}  // namespace weightd::testing
