// `weightctl quantize`: rewrites a safetensors checkpoint with its weights in
// FP8, through the daemon's own planning (PlanLoad and OutputLayout decide the
// output names, dtypes, shapes and order) and the fast CPU kernels, so that its
// bytes equal what a load of the same checkpoint holds. Streams: one source
// tensor and its FP8 form in memory at a time, plus an 8 MiB copy buffer.
// Not thread-safe (one call per process; the kernels use their own threads).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/quantize.h"
#include "weightd/v1/loader.pb.h"

namespace weightd::ctl {

struct QuantizeOptions {
  v1::Scheme scheme = v1::SCHEME_PER_TENSOR;
  std::vector<std::string> ignore;
  kernels::NonFinitePolicy policy = kernels::NonFinitePolicy::kFail;
  // LAYOUT_VLLM: vLLM's fused parameters (qkv_proj, gate_up_proj, one scale over each),
  // unpadded, in one model.safetensors, which vLLM's default loader reads without
  // requantizing. Built by the CPU reference of the layout, in memory (the whole FP8
  // model at once): a tool for small and medium models and for tests.
  v1::Layout layout = v1::LAYOUT_CHECKPOINT;
  // Called after every tensor with (source bytes done, total, tensors done, total).
  std::function<void(uint64_t, uint64_t, uint32_t, uint32_t)> progress;
};

struct QuantizeSummary {
  uint32_t tensors = 0, quantized = 0;
  uint64_t source_bytes = 0, output_bytes = 0;
  std::vector<std::string> files;  // written into the output directory
};

// `in`: a checkpoint directory or one .safetensors file. `out_dir` gets the
// shards (the input's names when it was sharded, else model.safetensors), the
// index when sharded, config.json with quantization_config, and (for a
// directory input) every other regular file under 64 MiB. Layout vllm: one
// model.safetensors, no index. A NaN/Inf under kFail
// is INVALID_ARGUMENT naming the shard, tensor, element and file byte offset.
absl::StatusOr<QuantizeSummary> QuantizeCheckpoint(const std::string& in, const std::string& out_dir,
                                                   const QuantizeOptions& options);

}  // namespace weightd::ctl
