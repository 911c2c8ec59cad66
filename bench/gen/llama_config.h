// Shapes of a Llama-architecture checkpoint (Hugging Face naming), with presets from
// a 2-layer toy up to Llama-3-70B, so benchmarks and tests can fabricate checkpoints
// of realistic layout without downloading one. Plain values; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/dtype.h"

namespace weightd::bench {

struct LlamaConfig {
  std::string name;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  bool tie_embeddings = false;

  // "tiny" (dimensions deliberately not all multiples of 128), "small", "8b"
  // (Llama-3-8B), "70b" (Llama-3-70B). NOT_FOUND for any other name.
  static absl::StatusOr<LlamaConfig> Preset(std::string_view name);
};

// INVALID_ARGUMENT unless every dimension is positive and kv heads divide heads.
absl::Status ValidateLlamaConfig(const LlamaConfig& config);

struct TensorDesc {
  std::string name;
  std::vector<int64_t> shape;
};

int64_t NumElements(const TensorDesc& tensor);

// Every tensor of the model, in the order Hugging Face lists them: embeddings,
// then per layer the norms, attention and MLP projections, then the final norm
// and lm_head (absent when embeddings are tied).
std::vector<TensorDesc> LlamaTensors(const LlamaConfig& config);

// An HF-style config.json for LlamaForCausalLM; `dtype` sets torch_dtype.
std::string LlamaConfigJson(const LlamaConfig& config, kernels::DType dtype);

}  // namespace weightd::bench
