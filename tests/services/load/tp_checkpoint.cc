#include "tests/services/load/tp_checkpoint.h"

#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "kernels/float_convert.h"
#include "services/safetensors/writer.h"

namespace weightd::testing {
namespace {

std::string Encode(kernels::DType dtype, const std::vector<float>& values) {
  std::string out(values.size() * kernels::DTypeSize(dtype), '\0');
  for (size_t i = 0; i < values.size(); ++i) {
    const uint32_t bits = std::bit_cast<uint32_t>(values[i]);
    if (dtype == kernels::DType::kF32) {
      std::memcpy(&out[i * 4], &bits, 4);
    } else if (dtype == kernels::DType::kBF16) {
      const uint16_t half = static_cast<uint16_t>(bits >> 16);
      std::memcpy(&out[i * 2], &half, 2);
    } else {
      const uint16_t half = kernels::HalfBitsFromFloat(values[i]);
      std::memcpy(&out[i * 2], &half, 2);
    }
  }
  return out;
}

TpTensor Make(std::string name, kernels::DType dtype, std::vector<int64_t> shape, uint32_t seed) {
  const int64_t rows = shape[0];
  const int64_t cols = shape.size() > 1 ? shape[1] : 1;
  std::vector<float> values(static_cast<size_t>(rows * cols));
  uint32_t state = seed * 2654435761u + 12345u;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      state = state * 1664525u + 1013904223u;
      const float u = static_cast<float>(state >> 8) / static_cast<float>(1u << 24) * 2.0f - 1.0f;
      const float grow = static_cast<float>(1 + 8 * r / rows) * static_cast<float>(1 + 8 * c / cols);
      values[static_cast<size_t>(r * cols + c)] = (r % 17 == 3 && shape.size() > 1) ? 0.0f : u * grow * 0.01f;
    }
  }
  return {std::move(name), dtype, std::move(shape), Encode(dtype, values)};
}

}  // namespace

const TpTensor& TpCheckpoint::Get(const std::string& name) const {
  for (const TpTensor& t : tensors) {
    if (t.name == name) return t;
  }
  static const TpTensor kMissing{};
  return kMissing;
}

TpCheckpoint MakeTpCheckpoint(int64_t gate_rows) {
  using kernels::DType;
  const std::string p = "model.layers.0.";
  TpCheckpoint c;
  uint32_t seed = 1;
  auto add = [&](std::string name, DType dtype, std::vector<int64_t> shape) {
    c.tensors.push_back(Make(std::move(name), dtype, std::move(shape), seed++));
  };
  add("model.embed_tokens.weight", DType::kBF16, {512, 256});
  add(p + "input_layernorm.weight", DType::kBF16, {256});
  add(p + "self_attn.q_proj.weight", DType::kBF16, {1024, 256});
  add(p + "self_attn.q_proj.bias", DType::kBF16, {1024});
  add(p + "self_attn.k_proj.weight", DType::kBF16, {256, 256});
  add(p + "self_attn.v_proj.weight", DType::kBF16, {256, 256});
  add(p + "self_attn.q_a_proj.weight", DType::kBF16, {128, 256});
  add(p + "self_attn.o_proj.weight", DType::kF16, {256, 1024});
  add(p + "self_attn.o_proj.bias", DType::kF16, {256});
  add(p + "post_attention_layernorm.weight", DType::kBF16, {256});
  add(p + "mlp.gate_proj.weight", DType::kBF16, {gate_rows, 256});
  add(p + "mlp.up_proj.weight", DType::kBF16, {1024, 256});
  add(p + "mlp.down_proj.weight", DType::kF32, {256, 1024});
  add("model.norm.weight", DType::kBF16, {256});
  add("lm_head.weight", DType::kBF16, {512, 256});
  c.config_json = R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256,
  "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 128, "num_hidden_layers": 1,
  "intermediate_size": 1024, "vocab_size": 512})";
  return c;
}

absl::Status WriteTpCheckpoint(const TpCheckpoint& checkpoint, const std::string& dir) {
  std::filesystem::create_directories(dir);
  const size_t half = checkpoint.tensors.size() / 2;
  for (int shard = 0; shard < 2; ++shard) {
    const size_t begin = shard == 0 ? 0 : half;
    const size_t end = shard == 0 ? half : checkpoint.tensors.size();
    std::vector<safetensors::TensorSpec> specs;
    for (size_t i = begin; i < end; ++i) {
      specs.push_back({checkpoint.tensors[i].name, checkpoint.tensors[i].dtype, checkpoint.tensors[i].shape});
    }
    WEIGHTD_ASSIGN_OR_RETURN(auto writer, safetensors::SafetensorsWriter::Create(
                                              absl::StrCat(dir, "/model-0000", shard + 1, "-of-00002.safetensors"),
                                              std::move(specs)));
    for (size_t i = begin; i < end; ++i) WEIGHTD_RETURN_IF_ERROR(writer->Append(checkpoint.tensors[i].bytes));
    WEIGHTD_RETURN_IF_ERROR(writer->Close());
  }
  std::ofstream config(dir + "/config.json");
  config << checkpoint.config_json;
  return config ? absl::OkStatus() : absl::InternalError("cannot write config.json");
}

}  // namespace weightd::testing
