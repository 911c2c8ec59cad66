#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "bench/gen/llama_config.h"
#include "bench/gen/tensor_fill.h"
#include "bench/gen/write_checkpoint.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace weightd::bench {
namespace {

using kernels::DType;
using nlohmann::json;

constexpr DType kDtypes[] = {DType::kBF16, DType::kF16, DType::kF32};

LlamaConfig Preset(const char* name) {
  absl::StatusOr<LlamaConfig> c = LlamaConfig::Preset(name);
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

int64_t TotalElements(const LlamaConfig& c) {
  int64_t n = 0;
  for (const TensorDesc& t : LlamaTensors(c)) n += NumElements(t);
  return n;
}

std::map<std::string, std::vector<int64_t>> ShapeMap(const LlamaConfig& c) {
  std::map<std::string, std::vector<int64_t>> m;
  for (const TensorDesc& t : LlamaTensors(c)) m[t.name] = t.shape;
  return m;
}

std::vector<uint8_t> Fill(uint64_t seed, const std::string& name, DType dtype, uint64_t offset,
                          size_t elements) {
  std::vector<uint8_t> out(elements * kernels::DTypeSize(dtype));
  FillTensor(seed, name, dtype, offset, out);
  return out;
}

// Decoders written independently of the encoders under test.
float F16ToFloat(uint16_t h) {
  const int exponent = (h >> 10) & 0x1F;
  const int mantissa = h & 0x3FF;
  float v;
  if (exponent == 0) {
    v = std::ldexp(static_cast<float>(mantissa), -24);
  } else if (exponent == 31) {
    v = mantissa ? NAN : INFINITY;
  } else {
    v = std::ldexp(static_cast<float>(mantissa | 0x400), exponent - 25);
  }
  return (h & 0x8000) ? -v : v;
}

float Decode(DType dtype, const uint8_t* p) {
  switch (dtype) {
    case DType::kBF16:
      return std::bit_cast<float>(uint32_t{p[0]} << 16 | uint32_t{p[1]} << 24);
    case DType::kF16:
      return F16ToFloat(static_cast<uint16_t>(p[0] | p[1] << 8));
    case DType::kF32:
      return std::bit_cast<float>(uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 |
                                  uint32_t{p[3]} << 24);
    default:
      break;
  }
  return NAN;
}

// --- presets and names ----------------------------------------------------------

TEST(LlamaConfigTest, TinyHasExactNamesInHfOrder) {
  const std::vector<TensorDesc> tensors = LlamaTensors(Preset("tiny"));
  std::vector<std::string> expected = {"model.embed_tokens.weight"};
  for (int i = 0; i < 2; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    for (const char* s :
         {"input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
          "self_attn.v_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
          "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"}) {
      expected.push_back(p + s);
    }
  }
  expected.push_back("model.norm.weight");
  expected.push_back("lm_head.weight");
  ASSERT_EQ(tensors.size(), 21u);
  for (size_t i = 0; i < tensors.size(); ++i) EXPECT_EQ(tensors[i].name, expected[i]) << i;
}

TEST(LlamaConfigTest, TinyShapes) {
  auto s = ShapeMap(Preset("tiny"));
  using V = std::vector<int64_t>;
  EXPECT_EQ(s["model.embed_tokens.weight"], (V{512, 256}));
  EXPECT_EQ(s["model.layers.1.input_layernorm.weight"], (V{256}));
  EXPECT_EQ(s["model.layers.1.self_attn.q_proj.weight"], (V{256, 256}));
  EXPECT_EQ(s["model.layers.1.self_attn.k_proj.weight"], (V{128, 256}));
  EXPECT_EQ(s["model.layers.1.self_attn.v_proj.weight"], (V{128, 256}));
  EXPECT_EQ(s["model.layers.1.self_attn.o_proj.weight"], (V{256, 256}));
  EXPECT_EQ(s["model.layers.1.post_attention_layernorm.weight"], (V{256}));
  EXPECT_EQ(s["model.layers.1.mlp.gate_proj.weight"], (V{688, 256}));
  EXPECT_EQ(s["model.layers.1.mlp.up_proj.weight"], (V{688, 256}));
  EXPECT_EQ(s["model.layers.1.mlp.down_proj.weight"], (V{256, 688}));
  EXPECT_EQ(s["model.norm.weight"], (V{256}));
  EXPECT_EQ(s["lm_head.weight"], (V{512, 256}));
}

TEST(LlamaConfigTest, LargerPresetsMatchPublishedModels) {
  EXPECT_EQ(LlamaTensors(Preset("small")).size(), 1u + 4 * 9 + 2);
  EXPECT_EQ(LlamaTensors(Preset("8b")).size(), 1u + 32 * 9 + 2);
  EXPECT_EQ(LlamaTensors(Preset("70b")).size(), 1u + 80 * 9 + 2);
  // Parameter counts of Meta-Llama-3-8B and Meta-Llama-3-70B.
  EXPECT_EQ(TotalElements(Preset("8b")), 8030261248);
  EXPECT_EQ(TotalElements(Preset("70b")), 70553706496);
  auto s = ShapeMap(Preset("70b"));
  EXPECT_EQ(s["model.layers.79.self_attn.k_proj.weight"], (std::vector<int64_t>{1024, 8192}));
  EXPECT_EQ(s["model.layers.79.mlp.down_proj.weight"], (std::vector<int64_t>{8192, 28672}));
  EXPECT_EQ(s["lm_head.weight"], (std::vector<int64_t>{128256, 8192}));
}

TEST(LlamaConfigTest, TiedEmbeddingsDropLmHead) {
  LlamaConfig c = Preset("tiny");
  c.tie_embeddings = true;
  const std::vector<TensorDesc> tensors = LlamaTensors(c);
  ASSERT_EQ(tensors.size(), 20u);
  EXPECT_EQ(tensors.back().name, "model.norm.weight");
}

TEST(LlamaConfigTest, UnknownPresetAndBadConfig) {
  EXPECT_EQ(LlamaConfig::Preset("13b").status().code(), absl::StatusCode::kNotFound);
  LlamaConfig c = Preset("tiny");
  EXPECT_TRUE(ValidateLlamaConfig(c).ok());
  c.num_kv_heads = 3;
  EXPECT_EQ(ValidateLlamaConfig(c).code(), absl::StatusCode::kInvalidArgument);
  c = Preset("tiny");
  c.head_dim = 0;
  EXPECT_EQ(ValidateLlamaConfig(c).code(), absl::StatusCode::kInvalidArgument);
}

TEST(LlamaConfigTest, ConfigJsonCarriesHfFields) {
  const json j = json::parse(LlamaConfigJson(Preset("8b"), DType::kBF16));
  EXPECT_EQ(j["architectures"], json::array({"LlamaForCausalLM"}));
  EXPECT_EQ(j["model_type"], "llama");
  EXPECT_EQ(j["hidden_size"], 4096);
  EXPECT_EQ(j["intermediate_size"], 14336);
  EXPECT_EQ(j["num_attention_heads"], 32);
  EXPECT_EQ(j["num_hidden_layers"], 32);
  EXPECT_EQ(j["num_key_value_heads"], 8);
  EXPECT_EQ(j["head_dim"], 128);
  EXPECT_EQ(j["vocab_size"], 128256);
  EXPECT_EQ(j["rms_norm_eps"].get<double>(), 1e-5);
  EXPECT_EQ(j["rope_theta"].get<double>(), 500000.0);
  EXPECT_EQ(j["max_position_embeddings"], 8192);
  EXPECT_EQ(j["tie_word_embeddings"], false);
  EXPECT_EQ(j["torch_dtype"], "bfloat16");
  EXPECT_EQ(json::parse(LlamaConfigJson(Preset("tiny"), DType::kF16))["torch_dtype"], "float16");
  EXPECT_EQ(json::parse(LlamaConfigJson(Preset("tiny"), DType::kF32))["torch_dtype"], "float32");
}

// --- values -------------------------------------------------------------------

TEST(TensorFillTest, Fnv1aKnownVectors) {
  EXPECT_EQ(Fnv1a64(""), 0xCBF29CE484222325ull);
  EXPECT_EQ(Fnv1a64("a"), 0xAF63DC4C8601EC8Cull);
  EXPECT_EQ(Fnv1a64("foobar"), 0x85944171F73967E8ull);
}

TEST(TensorFillTest, Bf16RoundsToNearestEven) {
  EXPECT_EQ(Fp32ToBf16Bits(1.0f), 0x3F80);
  EXPECT_EQ(Fp32ToBf16Bits(-2.0f), 0xC000);
  EXPECT_EQ(Fp32ToBf16Bits(0.0f), 0x0000);
  EXPECT_EQ(Fp32ToBf16Bits(-0.0f), 0x8000);
  EXPECT_EQ(Fp32ToBf16Bits(std::bit_cast<float>(0x3F808000u)), 0x3F80);  // tie, even stays
  EXPECT_EQ(Fp32ToBf16Bits(std::bit_cast<float>(0x3F818000u)), 0x3F82);  // tie, odd rounds up
  EXPECT_EQ(Fp32ToBf16Bits(std::bit_cast<float>(0x3F808001u)), 0x3F81);  // above tie
  EXPECT_EQ(Fp32ToBf16Bits(std::bit_cast<float>(0x3F807FFFu)), 0x3F80);  // below tie
  EXPECT_EQ(Fp32ToBf16Bits(0.1f), 0x3DCD);
  EXPECT_EQ(Fp32ToBf16Bits(std::bit_cast<float>(0x7F7FFFFFu)), 0x7F80);  // max float -> inf
  EXPECT_EQ(Fp32ToBf16Bits(INFINITY), 0x7F80);
  EXPECT_EQ(Fp32ToBf16Bits(std::bit_cast<float>(0x00000001u)), 0x0000);  // tiny subnormal
  EXPECT_EQ(Fp32ToBf16Bits(std::bit_cast<float>(0x7F800001u)), 0x7FC0);  // sNaN -> qNaN
  EXPECT_EQ(Fp32ToBf16Bits(std::bit_cast<float>(0xFFC00000u)), 0xFFC0);
}

TEST(TensorFillTest, F16RoundsToNearestEvenWithSubnormals) {
  EXPECT_EQ(Fp32ToF16Bits(1.0f), 0x3C00);
  EXPECT_EQ(Fp32ToF16Bits(-2.0f), 0xC000);
  EXPECT_EQ(Fp32ToF16Bits(-0.0f), 0x8000);
  EXPECT_EQ(Fp32ToF16Bits(0.1f), 0x2E66);
  EXPECT_EQ(Fp32ToF16Bits(0.02f), 0x251F);
  EXPECT_EQ(Fp32ToF16Bits(1.0f + 0x1p-11f), 0x3C00);      // tie, even stays
  EXPECT_EQ(Fp32ToF16Bits(1.0f + 3 * 0x1p-11f), 0x3C02);  // tie, odd rounds up
  EXPECT_EQ(Fp32ToF16Bits(65504.0f), 0x7BFF);
  EXPECT_EQ(Fp32ToF16Bits(65519.99f), 0x7BFF);
  EXPECT_EQ(Fp32ToF16Bits(65520.0f), 0x7C00);  // tie rounds to inf
  EXPECT_EQ(Fp32ToF16Bits(1e10f), 0x7C00);
  EXPECT_EQ(Fp32ToF16Bits(-INFINITY), 0xFC00);
  EXPECT_EQ(Fp32ToF16Bits(0x1p-14f), 0x0400);             // smallest normal
  EXPECT_EQ(Fp32ToF16Bits(0x1p-14f - 0x1p-25f), 0x0400);  // tie, rounds up into normals
  EXPECT_EQ(Fp32ToF16Bits(0x1p-24f), 0x0001);             // smallest subnormal
  EXPECT_EQ(Fp32ToF16Bits(0x1p-25f), 0x0000);             // tie to even zero
  EXPECT_EQ(Fp32ToF16Bits(0x1.8p-25f), 0x0001);           // above tie
  EXPECT_EQ(Fp32ToF16Bits(0x1.8p-24f), 0x0002);           // tie, odd rounds up
  EXPECT_EQ(Fp32ToF16Bits(0x1.4p-24f), 0x0001);
  EXPECT_EQ(Fp32ToF16Bits(-0x1p-20f), 0x8010);
  EXPECT_EQ(Fp32ToF16Bits(0x1p-26f), 0x0000);
  EXPECT_EQ(Fp32ToF16Bits(std::bit_cast<float>(0x7F800001u)), 0x7E00);
}

TEST(TensorFillTest, F16MatchesExhaustiveReferenceOnEveryHalfAndMidpoint) {
  // Every finite half, and every midpoint between neighbours, nudged both ways.
  for (uint32_t h = 0; h < 0x7C00; ++h) {
    const float v = F16ToFloat(static_cast<uint16_t>(h));
    ASSERT_EQ(Fp32ToF16Bits(v), h);
    ASSERT_EQ(Fp32ToF16Bits(-v), h | 0x8000);
    const float next = h + 1 < 0x7C00 ? F16ToFloat(static_cast<uint16_t>(h + 1)) : 65536.0f;
    const float mid = v + (next - v) / 2;  // exact in fp32
    ASSERT_EQ(Fp32ToF16Bits(mid), (h & 1) ? h + 1 : h) << h;
    ASSERT_EQ(Fp32ToF16Bits(std::nextafter(mid, 0.0f)), h) << h;
    ASSERT_EQ(Fp32ToF16Bits(std::nextafter(mid, INFINITY)), h + 1) << h;
  }
}

TEST(TensorFillTest, PiecesEqualWhole) {
  const size_t n = 12000;
  for (const char* name :
       {"model.layers.3.mlp.up_proj.weight", "model.norm.weight", "model.embed_tokens.weight"}) {
    for (DType dtype : kDtypes) {
      const size_t es = kernels::DTypeSize(dtype);
      const std::vector<uint8_t> whole = Fill(7, name, dtype, 0, n);
      std::vector<uint8_t> pieced(whole.size());
      size_t done = 0;
      for (size_t piece : {size_t{1}, size_t{7}, size_t{4097}, size_t{128}, size_t{3}}) {
        FillTensor(7, name, dtype, done, std::span(pieced).subspan(done * es, piece * es));
        done += piece;
      }
      FillTensor(7, name, dtype, done, std::span(pieced).subspan(done * es));
      EXPECT_EQ(pieced, whole) << name << " " << kernels::DTypeName(dtype);
      // Deep into a 70B-sized tensor too.
      const uint64_t far = uint64_t{1} << 36;
      const std::vector<uint8_t> far_whole = Fill(7, name, dtype, far, 100);
      EXPECT_EQ(Fill(7, name, dtype, far + 40, 60),
                std::vector<uint8_t>(far_whole.begin() + 40 * es, far_whole.end()));
    }
  }
}

TEST(TensorFillTest, DeterministicPerSeedAndName) {
  const std::string name = "model.layers.0.self_attn.q_proj.weight";
  for (DType dtype : kDtypes) {
    EXPECT_EQ(Fill(1, name, dtype, 0, 1000), Fill(1, name, dtype, 0, 1000));
    EXPECT_NE(Fill(1, name, dtype, 0, 1000), Fill(2, name, dtype, 0, 1000));
    EXPECT_NE(Fill(1, name, dtype, 0, 1000),
              Fill(1, "model.layers.1.self_attn.q_proj.weight", dtype, 0, 1000));
  }
}

TEST(TensorFillTest, EncodingsAgreeWithSyntheticValue) {
  const std::string name = "model.layers.0.mlp.gate_proj.weight";
  const std::vector<uint8_t> bf16 = Fill(3, name, DType::kBF16, 500, 300);
  const std::vector<uint8_t> f16 = Fill(3, name, DType::kF16, 500, 300);
  const std::vector<uint8_t> f32 = Fill(3, name, DType::kF32, 500, 300);
  for (size_t i = 0; i < 300; ++i) {
    const float v = SyntheticValue(3, name, 500 + i);
    EXPECT_EQ(std::bit_cast<uint32_t>(Decode(DType::kF32, &f32[4 * i])),
              std::bit_cast<uint32_t>(v));
    EXPECT_EQ(bf16[2 * i] | bf16[2 * i + 1] << 8, Fp32ToBf16Bits(v));
    EXPECT_EQ(f16[2 * i] | f16[2 * i + 1] << 8, Fp32ToF16Bits(v));
  }
}

// Pins the generator: checkpoints written today must equal those written later, on
// any platform. Change these only together with a deliberate change of the values.
TEST(TensorFillTest, GoldenValues) {
  const std::string up = "model.layers.0.mlp.up_proj.weight";
  const std::vector<uint8_t> bytes = Fill(0, up, DType::kF32, 0, 100000);  // 14 outliers
  EXPECT_EQ(Fnv1a64(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size())),
            0x75DEA9C3340C391Full);
  EXPECT_EQ(std::bit_cast<uint32_t>(SyntheticValue(0, up, 13394)), 0xBEFD5B07u);  // an outlier
  EXPECT_EQ(std::bit_cast<uint32_t>(SyntheticValue(0, "model.norm.weight", 0)), 0x3F8085F5u);
  EXPECT_EQ(std::bit_cast<uint32_t>(SyntheticValue(42, "model.embed_tokens.weight", 12345)),
            0x3B85C096u);
}

// --- written checkpoint -------------------------------------------------------

class WrittenCheckpointTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = testing::TempDir() + "/weightd_gen_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string ReadFile(const std::string& name) {
    std::ifstream in(dir_ + "/" + name, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  std::string dir_;
};

struct ParsedTensor {
  std::string file;
  DType dtype;
  std::vector<int64_t> shape;
  const uint8_t* data;
  uint64_t size;
};

TEST_F(WrittenCheckpointTest, TinyThreeShardsMixedDtypes) {
  GenOptions options;
  options.config = Preset("tiny");
  options.out_dir = dir_ + "/ckpt";  // not yet existing: created
  options.shards = 3;
  options.mixed_dtypes = true;
  options.seed = 11;
  ASSERT_TRUE(WriteCheckpoint(options).ok());
  dir_ += "/ckpt";

  const std::vector<TensorDesc> tensors = LlamaTensors(options.config);
  std::set<std::string> files_on_disk;
  for (const auto& e : std::filesystem::directory_iterator(dir_)) {
    files_on_disk.insert(e.path().filename().string());
  }
  EXPECT_EQ(files_on_disk, (std::set<std::string>{"config.json", "model-00001-of-00003.safetensors",
                                                  "model-00002-of-00003.safetensors",
                                                  "model-00003-of-00003.safetensors",
                                                  "model.safetensors.index.json"}));
  EXPECT_EQ(json::parse(ReadFile("config.json"))["torch_dtype"], "bfloat16");

  const json index = json::parse(ReadFile("model.safetensors.index.json"));
  const json& weight_map = index["weight_map"];
  EXPECT_EQ(weight_map.size(), tensors.size());

  std::map<std::string, std::string> contents;
  std::map<std::string, ParsedTensor> parsed;
  uint64_t total = 0;
  std::set<std::string> used_files;
  for (const std::string file :
       {"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
        "model-00003-of-00003.safetensors"}) {
    contents[file] = ReadFile(file);
    const std::string& bytes = contents[file];
    ASSERT_GE(bytes.size(), 8u);
    uint64_t header_len = 0;
    for (int b = 0; b < 8; ++b) header_len |= uint64_t{static_cast<uint8_t>(bytes[b])} << (8 * b);
    ASSERT_EQ(header_len % 8, 0u);
    ASSERT_LE(8 + header_len, bytes.size());
    const json header = json::parse(bytes.substr(8, header_len));
    EXPECT_EQ(header["__metadata__"], json({{"format", "pt"}}));
    // Tensors follow one another with no gaps, in header order.
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    for (const auto& [name, entry] : header.items()) {
      if (name == "__metadata__") continue;
      EXPECT_EQ(parsed.count(name), 0u) << name;
      const auto dtype = kernels::ParseDType(entry["dtype"].get<std::string>());
      ASSERT_TRUE(dtype.has_value());
      const auto shape = entry["shape"].get<std::vector<int64_t>>();
      const uint64_t begin = entry["data_offsets"][0], end = entry["data_offsets"][1];
      int64_t elements = 1;
      for (int64_t d : shape) elements *= d;
      EXPECT_EQ(end - begin, static_cast<uint64_t>(elements) * kernels::DTypeSize(*dtype)) << name;
      ranges.push_back({begin, end});
      parsed[name] = {file, *dtype, shape,
                      reinterpret_cast<const uint8_t*>(bytes.data()) + 8 + header_len + begin,
                      end - begin};
      EXPECT_EQ(weight_map[name], file) << name;
      total += end - begin;
      used_files.insert(file);
    }
    std::sort(ranges.begin(), ranges.end());
    uint64_t expect = 0;
    for (const auto& [b, e] : ranges) {
      EXPECT_EQ(b, expect);
      expect = e;
    }
    EXPECT_EQ(8 + header_len + expect, bytes.size()) << file;
  }
  EXPECT_EQ(used_files.size(), 3u);
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), total);

  // Every tensor exactly once, with its shape, its cycled dtype, and the generator's bytes.
  ASSERT_EQ(parsed.size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const ParsedTensor& p = parsed.at(tensors[i].name);
    EXPECT_EQ(p.shape, tensors[i].shape);
    EXPECT_EQ(p.dtype, kDtypes[i % 3]) << tensors[i].name;
    const std::vector<uint8_t> expected =
        Fill(11, tensors[i].name, p.dtype, 0, static_cast<size_t>(NumElements(tensors[i])));
    EXPECT_TRUE(std::equal(expected.begin(), expected.end(), p.data, p.data + p.size))
        << tensors[i].name;
  }

  // Plausible weights: a distribution check, so it has tolerances.
  double sum = 0, sum_sq = 0;
  int64_t count = 0, outliers = 0;
  for (const TensorDesc& t : tensors) {
    const ParsedTensor& p = parsed.at(t.name);
    const size_t es = kernels::DTypeSize(p.dtype);
    const bool norm = t.name.ends_with("norm.weight");
    double norm_sum = 0;
    for (uint64_t off = 0; off < p.size; off += es) {
      const float v = Decode(p.dtype, p.data + off);
      ASSERT_TRUE(std::isfinite(v)) << t.name;
      if (norm) {
        EXPECT_GE(v, 0.94f) << t.name;
        EXPECT_LE(v, 1.06f) << t.name;
        norm_sum += v;
      } else if (t.name.find("proj") != std::string::npos) {
        if (std::fabs(v) > 0.095f) {
          ++outliers;
          EXPECT_LE(std::fabs(v), 0.5f);
          continue;
        }
        sum += v;
        sum_sq += double{v} * v;
        ++count;
      } else {
        EXPECT_LT(std::fabs(v), 0.095f) << t.name;  // embeddings carry no outliers
      }
    }
    if (norm) {
      EXPECT_NEAR(norm_sum / (p.size / es), 1.0, 0.005) << t.name;
    }
  }
  const double mean = sum / count;
  EXPECT_NEAR(mean, 0.0, 0.001);
  EXPECT_NEAR(std::sqrt(sum_sq / count - mean * mean), 0.02, 0.001);
  const double outlier_rate = static_cast<double>(outliers) / (count + outliers);
  EXPECT_GT(outlier_rate, 0.5e-4);
  EXPECT_LT(outlier_rate, 2e-4);
}

TEST_F(WrittenCheckpointTest, SingleShardHasNoIndex) {
  GenOptions options;
  options.config = Preset("tiny");
  options.out_dir = dir_;
  options.dtype = DType::kF16;
  ASSERT_TRUE(WriteCheckpoint(options).ok());
  std::set<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir_)) {
    files.insert(e.path().filename().string());
  }
  EXPECT_EQ(files, (std::set<std::string>{"config.json", "model.safetensors"}));
  EXPECT_EQ(json::parse(ReadFile("config.json"))["torch_dtype"], "float16");
  const std::string bytes = ReadFile("model.safetensors");
  uint64_t header_len = 0;
  for (int b = 0; b < 8; ++b) header_len |= uint64_t{static_cast<uint8_t>(bytes[b])} << (8 * b);
  const json header = json::parse(bytes.substr(8, header_len));
  EXPECT_EQ(header.size(), 22u);  // 21 tensors + __metadata__
  EXPECT_EQ(bytes.size(), 8 + header_len + 2 * TotalElements(options.config));
}

TEST(PlanCheckpointTest, ShardsAreBalancedContiguousAndNonEmpty) {
  GenOptions options;
  options.config = Preset("8b");
  options.out_dir = "unused";
  for (int shards : {1, 2, 4, 7, 100, 291}) {
    options.shards = shards;
    absl::StatusOr<CheckpointPlan> plan = PlanCheckpoint(options);
    ASSERT_TRUE(plan.ok()) << plan.status();
    ASSERT_EQ(plan->files.size(), static_cast<size_t>(shards));
    std::vector<uint64_t> bytes(shards, 0);
    int previous = 0;
    uint64_t largest = 0;
    for (const PlannedTensor& t : plan->tensors) {
      EXPECT_TRUE(t.shard == previous || t.shard == previous + 1);
      EXPECT_EQ(t.byte_offset, bytes[t.shard]);
      bytes[t.shard] += t.byte_size;
      previous = t.shard;
      largest = std::max(largest, t.byte_size);
    }
    for (int s = 0; s < shards; ++s) {
      EXPECT_GT(bytes[s], 0u);
      // Midpoint assignment: no shard exceeds its fair share by more than a tensor.
      EXPECT_LE(bytes[s], plan->total_bytes / shards + largest) << shards << " " << s;
    }
  }
  EXPECT_EQ(PlanCheckpoint(options)->files[0], "model-00001-of-00291.safetensors");
}

TEST(PlanCheckpointTest, RejectsBadOptions) {
  GenOptions options;
  options.config = Preset("tiny");
  options.out_dir = "unused";
  options.shards = 22;
  EXPECT_EQ(PlanCheckpoint(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.shards = 0;
  EXPECT_EQ(PlanCheckpoint(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.shards = 1;
  options.dtype = DType::kF8E4M3;
  EXPECT_EQ(PlanCheckpoint(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.dtype = DType::kBF16;
  options.out_dir = "";
  EXPECT_EQ(PlanCheckpoint(options).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace weightd::bench
