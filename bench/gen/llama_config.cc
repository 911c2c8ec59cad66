#include "bench/gen/llama_config.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace weightd::bench {
namespace {

LlamaConfig Make(std::string name, int64_t vocab, int64_t hidden, int64_t inter, int64_t layers,
                 int64_t heads, int64_t kv_heads, int64_t head_dim) {
  LlamaConfig c;
  c.name = std::move(name);
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.intermediate_size = inter;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = head_dim;
  return c;
}

std::string_view TorchDtype(kernels::DType dtype) {
  switch (dtype) {
    case kernels::DType::kBF16:
      return "bfloat16";
    case kernels::DType::kF16:
      return "float16";
    case kernels::DType::kF32:
      return "float32";
    case kernels::DType::kF8E4M3:
      return "float8_e4m3fn";
    default:
      break;
  }
  return "bfloat16";
}

}  // namespace

absl::StatusOr<LlamaConfig> LlamaConfig::Preset(std::string_view name) {
  if (name == "tiny") return Make("tiny", 512, 256, 688, 2, 8, 4, 32);
  if (name == "small") return Make("small", 32000, 1024, 2816, 4, 16, 8, 64);
  if (name == "8b") return Make("8b", 128256, 4096, 14336, 32, 32, 8, 128);
  if (name == "70b") return Make("70b", 128256, 8192, 28672, 80, 64, 8, 128);
  return absl::NotFoundError(
      absl::StrCat("unknown preset \"", std::string(name), "\" (known: tiny, small, 8b, 70b)"));
}

absl::Status ValidateLlamaConfig(const LlamaConfig& c) {
  if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.intermediate_size <= 0 || c.num_layers <= 0 ||
      c.num_heads <= 0 || c.num_kv_heads <= 0 || c.head_dim <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("config \"", c.name, "\": every dimension must be positive"));
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("config \"", c.name, "\": num_kv_heads ",
                                                   c.num_kv_heads, " does not divide num_heads ",
                                                   c.num_heads));
  }
  return absl::OkStatus();
}

int64_t NumElements(const TensorDesc& tensor) {
  int64_t n = 1;
  for (int64_t d : tensor.shape) n *= d;
  return n;
}

std::vector<TensorDesc> LlamaTensors(const LlamaConfig& c) {
  const int64_t q_rows = c.num_heads * c.head_dim;
  const int64_t kv_rows = c.num_kv_heads * c.head_dim;
  std::vector<TensorDesc> out;
  out.reserve(static_cast<size_t>(9 * c.num_layers + 3));
  out.push_back({"model.embed_tokens.weight", {c.vocab_size, c.hidden_size}});
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    out.push_back({p + "input_layernorm.weight", {c.hidden_size}});
    out.push_back({p + "self_attn.q_proj.weight", {q_rows, c.hidden_size}});
    out.push_back({p + "self_attn.k_proj.weight", {kv_rows, c.hidden_size}});
    out.push_back({p + "self_attn.v_proj.weight", {kv_rows, c.hidden_size}});
    out.push_back({p + "self_attn.o_proj.weight", {c.hidden_size, q_rows}});
    out.push_back({p + "post_attention_layernorm.weight", {c.hidden_size}});
    out.push_back({p + "mlp.gate_proj.weight", {c.intermediate_size, c.hidden_size}});
    out.push_back({p + "mlp.up_proj.weight", {c.intermediate_size, c.hidden_size}});
    out.push_back({p + "mlp.down_proj.weight", {c.hidden_size, c.intermediate_size}});
  }
  out.push_back({"model.norm.weight", {c.hidden_size}});
  if (!c.tie_embeddings) out.push_back({"lm_head.weight", {c.vocab_size, c.hidden_size}});
  return out;
}

std::string LlamaConfigJson(const LlamaConfig& c, kernels::DType dtype) {
  nlohmann::ordered_json j;
  j["architectures"] = {"LlamaForCausalLM"};
  j["model_type"] = "llama";
  j["hidden_act"] = "silu";
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_attention_heads"] = c.num_heads;
  j["num_hidden_layers"] = c.num_layers;
  j["num_key_value_heads"] = c.num_kv_heads;
  j["head_dim"] = c.head_dim;
  j["vocab_size"] = c.vocab_size;
  j["max_position_embeddings"] = 8192;
  j["rms_norm_eps"] = 1e-5;
  j["rope_theta"] = 500000.0;
  j["attention_bias"] = false;
  j["mlp_bias"] = false;
  j["initializer_range"] = 0.02;
  j["tie_word_embeddings"] = c.tie_embeddings;
  j["torch_dtype"] = std::string(TorchDtype(dtype));
  j["use_cache"] = true;
  return j.dump(2) + "\n";
}

}  // namespace weightd::bench
