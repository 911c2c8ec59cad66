// Layout vllm end to end: the real daemon with 8 host devices, the real
// weightctl. Every rank's export of every scheme, tensor-parallel size (key/value
// heads replicated from tp 4 on), source and scale scope is verified byte for
// byte against the CPU reference of the fused layout (weightctl verify --layout
// vllm, client/weightctl/vllm_reference.h); the manifest names vLLM's parameters
// with their shapes; a checkpoint that cannot be fused fails with its message
// and leaves no device memory behind.
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/e2e/daemon_process.h"
#include "tests/services/load/tp_checkpoint.h"

namespace weightd::testing {
namespace {

// The tensor-parallel checkpoint with what a Qwen2-style model has besides:
// key and value biases, and a vocabulary (500) that is not a multiple of 64.
TpCheckpoint MakeFusableCheckpoint() {
  TpCheckpoint c = MakeTpCheckpoint();
  const std::string p = "model.layers.0.self_attn.";
  const TpTensor& q_bias = c.Get(p + "q_proj.bias");
  c.tensors.push_back({p + "k_proj.bias", q_bias.dtype, {256}, q_bias.bytes.substr(0, 512)});
  c.tensors.push_back({p + "v_proj.bias", q_bias.dtype, {256}, q_bias.bytes.substr(512, 512)});
  for (TpTensor& t : c.tensors) {
    if (t.name == "model.embed_tokens.weight" || t.name == "lm_head.weight") {
      t.shape[0] = 500;
      t.bytes.resize(500 * 256 * 2);
    }
  }
  return c;
}

class VllmLayoutE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(WriteTpCheckpoint(MakeFusableCheckpoint(), daemon_.model_root() + "/qwen").ok());
    TpCheckpoint no_v = MakeFusableCheckpoint();
    std::erase_if(no_v.tensors, [](const TpTensor& t) { return t.name == "model.layers.0.self_attn.v_proj.weight"; });
    ASSERT_TRUE(WriteTpCheckpoint(no_v, daemon_.model_root() + "/no-v").ok());
    daemon_.Start({"--host-devices=8"});
  }
  void ExpectOk(const CommandResult& result) { EXPECT_EQ(result.exit_code, 0) << result.out << result.err; }

  // Loads `model` with layout vllm, then exports every rank and verifies it.
  void LoadAndVerify(const std::string& model, const std::string& source, int tp,
                     const std::vector<std::string>& flags) {
    std::vector<std::string> load = {"load", model, source, absl::StrCat("--tp=", tp), "--layout=vllm"};
    load.insert(load.end(), flags.begin(), flags.end());
    ExpectOk(daemon_.Ctl(load));
    for (int r = 0; r < tp; ++r) {
      const std::string out = absl::StrCat(daemon_.dir(), "/", model, "-rank", r);
      ExpectOk(daemon_.Ctl({"export", model, out, absl::StrCat("--rank=", r)}));
      std::vector<std::string> verify = {"verify", daemon_.model_root() + "/qwen", out, absl::StrCat("--tp=", tp),
                                         absl::StrCat("--rank=", r), "--layout=vllm"};
      verify.insert(verify.end(), flags.begin(), flags.end());
      CommandResult result = daemon_.Ctl(verify);
      ExpectOk(result);
      // 12 outputs: embed, 2 norms, qkv weight and bias, q_a_proj, o_proj weight and bias,
      // gate_up, down, final norm, lm_head (scales counted with their weights).
      EXPECT_NE(result.out.find("verified 12 tensors"), std::string::npos) << model << " rank " << r << result.out;
    }
    ExpectOk(daemon_.Ctl({"unload", model}));
  }

  nlohmann::json Json(const CommandResult& result) {
    EXPECT_EQ(result.exit_code, 0) << result.err;
    return nlohmann::json::parse(result.out, nullptr, false);
  }

  DaemonProcess daemon_;
};

TEST_F(VllmLayoutE2ETest, EveryRankOfEverySchemeAndSplitEqualsTheFusedReference) {
  const std::string push = "--push=" + daemon_.model_root() + "/qwen";
  LoadAndVerify("pt1", "--path=qwen", 1, {});
  LoadAndVerify("pt2", push, 2, {});
  LoadAndVerify("pt8", "--path=qwen", 8, {});  // 2 key/value heads: each shared by 4 ranks
  LoadAndVerify("pt4-shard", push, 4, {"--scale-scope=shard"});
  LoadAndVerify("pc4", "--path=qwen", 4, {"--scheme=per-channel"});
  LoadAndVerify("bl8", push, 8, {"--scheme=block"});
  LoadAndVerify("none2", "--path=qwen", 2, {"--scheme=none"});
}

TEST_F(VllmLayoutE2ETest, TheManifestNamesVllmsParametersWithTheirShapes) {
  ExpectOk(daemon_.Ctl({"load", "m", "--path=qwen", "--tp=4", "--layout=vllm"}));
  nlohmann::json rank = Json(daemon_.Ctl({"manifest", "m", "--rank=3", "--json"}))["ranks"][0];
  std::map<std::string, nlohmann::json> shapes;
  for (const nlohmann::json& t : rank["tensors"]) shapes[t["name"]] = t["shape"];
  const std::string p = "model.layers.0.";
  // q: 1024 / 4 rows; k and v: one head of 128 rows each (2 heads over 4 ranks).
  EXPECT_EQ(shapes[p + "self_attn.qkv_proj.weight"], nlohmann::json::parse(R"(["512", "256"])"));
  EXPECT_EQ(shapes[p + "self_attn.qkv_proj.bias"], nlohmann::json::parse(R"(["512"])"));
  EXPECT_EQ(shapes.count(p + "self_attn.qkv_proj.weight_scale"), 1u);
  EXPECT_EQ(shapes[p + "mlp.gate_up_proj.weight"], nlohmann::json::parse(R"(["512", "256"])"));
  // 500 rows padded to 512, 128 per rank.
  EXPECT_EQ(shapes["model.embed_tokens.weight"], nlohmann::json::parse(R"(["128", "256"])"));
  EXPECT_EQ(shapes["lm_head.weight"], nlohmann::json::parse(R"(["128", "256"])"));
  for (const char* gone : {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
                           "mlp.gate_proj.weight", "mlp.up_proj.weight", "self_attn.q_proj.weight_scale"}) {
    EXPECT_EQ(shapes.count(p + gone), 0u) << gone;
  }
  // The reference of the checkpoint layout does not match a vllm export: the check can fail.
  ExpectOk(daemon_.Ctl({"export", "m", daemon_.dir() + "/m3", "--rank=3"}));
  CommandResult wrong =
      daemon_.Ctl({"verify", daemon_.model_root() + "/qwen", daemon_.dir() + "/m3", "--tp=4", "--rank=3"});
  EXPECT_EQ(wrong.exit_code, 1) << wrong.out;
  wrong = daemon_.Ctl({"verify", daemon_.model_root() + "/qwen", daemon_.dir() + "/m3", "--tp=4", "--rank=2",
                       "--layout=vllm"});
  EXPECT_EQ(wrong.exit_code, 1) << wrong.out;
  EXPECT_NE(wrong.err.find("FAILED_PRECONDITION"), std::string::npos) << wrong.err;
}

TEST_F(VllmLayoutE2ETest, ACheckpointThatCannotBeFusedFailsWithItsMessageAndFreesEverything) {
  CommandResult missing = daemon_.Ctl({"load", "nv", "--path=no-v", "--tp=2", "--layout=vllm"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("INVALID_ARGUMENT: layout vllm fuses q_proj, k_proj, v_proj into "
                             "'model.layers.0.self_attn.qkv_proj.weight', but the checkpoint has no "
                             "'model.layers.0.self_attn.v_proj.weight'"),
            std::string::npos)
      << missing.err;
  // The tiny preset's gate_proj has 688 rows: up_proj's rows would start off the block
  // scheme's 128-row grid of gate_up_proj (vLLM refuses such a model under block FP8 too).
  ExpectOk(daemon_.GenerateTiny("tiny", {"--dtype=bf16"}));
  CommandResult block = daemon_.Ctl({"load", "bl", "--path=tiny", "--layout=vllm", "--scheme=block"});
  EXPECT_EQ(block.exit_code, 1);
  EXPECT_NE(block.err.find("INVALID_ARGUMENT: tensor 'model.layers.0.mlp.up_proj.weight' in shard '"),
            std::string::npos)
      << block.err;
  EXPECT_NE(block.err.find("layout vllm places its rank 0 rows at row 688 of 'model.layers.0.mlp.gate_up_proj.weight', "
                           "off the 128-row grid of the block scheme"),
            std::string::npos)
      << block.err;
  CommandResult bad = daemon_.Ctl({"load", "x", "--path=qwen", "--layout=diagonal"});
  EXPECT_EQ(bad.exit_code, 1) << bad.err;
  EXPECT_NE(bad.err.find("--layout=diagonal: use checkpoint or vllm"), std::string::npos) << bad.err;
  for (int d = 0; d < 8; ++d) {
    EXPECT_EQ(daemon_.Metric(absl::StrCat("weightd_device_memory_used_bytes{device=\"", d, "\"}")), 0);
  }
}

// Under --host-memory-limit a part of a fused output waits on the host for the other
// parts, outside the limit: charged, gate_proj (512 KiB) would hold back the admission
// of up_proj (512 KiB) that it waits for, beyond the 768 KiB gathering share of 1 MiB.
// (down_proj, 1 MiB of F32, is left unquantized: written through, never gathered.)
TEST(VllmLayoutHostMemoryE2ETest, FusedPartsWaitingForEachOtherDoNotStallAPushUnderTheLimit) {
  DaemonProcess daemon;
  ASSERT_TRUE(WriteTpCheckpoint(MakeFusableCheckpoint(), daemon.model_root() + "/qwen").ok());
  daemon.Start({"--host-memory-limit=1MiB", "--push-idle-timeout-seconds=20"});
  CommandResult load = daemon.Ctl(
      {"load", "q", "--push=" + daemon.model_root() + "/qwen", "--layout=vllm", "--ignore=re:.*down_proj.*"});
  ASSERT_EQ(load.exit_code, 0) << load.err;
  const std::string out = daemon.dir() + "/q-rank0";
  ASSERT_EQ(daemon.Ctl({"export", "q", out}).exit_code, 0);
  CommandResult verify =
      daemon.Ctl({"verify", daemon.model_root() + "/qwen", out, "--layout=vllm", "--ignore=re:.*down_proj.*"});
  EXPECT_EQ(verify.exit_code, 0) << verify.err;
}

}  // namespace
}  // namespace weightd::testing
