// End to end, NaN and Inf in a weight: by default the load fails with
// INVALID_ARGUMENT naming the shard and tensor; under --nonfinite=saturate NaN
// and +Inf become +448 (0x7E) and -Inf -448 (0xFE), under every scheme, and
// `weightctl quantize` follows the same policy.
#include <cmath>
#include <filesystem>
#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/e2e/checkpoint_files.h"
#include "tests/e2e/daemon_process.h"

namespace weightd::testing {
namespace {

std::string F32Bytes(const std::vector<float>& values) {
  std::string bytes(values.size() * 4, '\0');
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

class NonFiniteE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = daemon_.model_root() + "/nan";
    std::filesystem::create_directories(dir);
    // up_proj [2, 3]: NaN at element 1, +Inf at 2, -Inf at 4; q_proj is clean.
    WriteFile(dir + "/model.safetensors",
              ShardOf({{"model.layers.0.mlp.up_proj.weight", {"F32", {2, 3}, F32Bytes({1.0f, NAN, INFINITY, -2.0f,
                                                                                        -INFINITY, 0.5f})}},
                       {"model.layers.0.self_attn.q_proj.weight", {"F32", {1, 2}, F32Bytes({1.0f, -1.0f})}}}));
    WriteFile(dir + "/config.json", "{}");
    // The same up_proj with every part layout vllm fuses it and q_proj with.
    const std::string fusable = daemon_.model_root() + "/nan-fusable";
    std::filesystem::create_directories(fusable);
    const std::string clean = F32Bytes({1.0f, -1.0f, 0.5f, 2.0f, -0.25f, 3.0f});
    WriteFile(fusable + "/model.safetensors",
              ShardOf({{"model.layers.0.mlp.gate_proj.weight", {"F32", {2, 3}, clean}},
                       {"model.layers.0.mlp.up_proj.weight", {"F32", {2, 3}, F32Bytes({1.0f, NAN, INFINITY, -2.0f,
                                                                                        -INFINITY, 0.5f})}},
                       {"model.layers.0.self_attn.q_proj.weight", {"F32", {2, 3}, clean}},
                       {"model.layers.0.self_attn.k_proj.weight", {"F32", {2, 3}, clean}},
                       {"model.layers.0.self_attn.v_proj.weight", {"F32", {2, 3}, clean}}}));
    WriteFile(fusable + "/config.json", "{}");
    daemon_.Start();
  }

  DaemonProcess daemon_;
};

// A push places each gathered tensor while the stream gathers the next: the
// error of the first tensor comes back all the same, and nothing stays allocated.
TEST_F(NonFiniteE2ETest, DefaultFailsNamingShardAndTensor) {
  const std::string pushed = "--push=" + daemon_.model_root() + "/nan";
  for (const std::string source : {std::string("--path=nan"), pushed}) {
    for (const char* flag : {"--nonfinite=fail", "--scheme=block"}) {
      SCOPED_TRACE(source + " " + flag);
      CommandResult load = daemon_.Ctl({"load", "m", source, flag});
      EXPECT_EQ(load.exit_code, 1);
      EXPECT_NE(load.err.find("INVALID_ARGUMENT"), std::string::npos) << load.err;
      EXPECT_NE(load.err.find("model.layers.0.mlp.up_proj.weight"), std::string::npos) << load.err;
      EXPECT_NE(load.err.find("model.safetensors"), std::string::npos) << load.err;
      EXPECT_NE(load.err.find("element 1"), std::string::npos) << load.err;
      EXPECT_EQ(daemon_.Metric("weightd_device_memory_used_bytes{device=\"0\"}"), 0);
    }
  }
  CommandResult quantize = RunCommand({BinPath("weightctl"), "--progress=false", "quantize",
                                       daemon_.model_root() + "/nan", daemon_.dir() + "/q"});
  EXPECT_EQ(quantize.exit_code, 1);
  EXPECT_NE(quantize.err.find("tensor 'model.layers.0.mlp.up_proj.weight'"), std::string::npos) << quantize.err;
}

// --park-per-tensor: a NaN among the rows parked in the destination (taken with
// their copy) or among the rest (taken on the host; with --park-rest-in-arena, the
// parameter, taken as it is copied into the destination of model.norm.weight, placed
// after it) fails the load with the same INVALID_ARGUMENT naming shard, tensor and
// element, and nothing stays allocated.
class ParkedNonFiniteE2ETest : public ::testing::TestWithParam<bool> {};

TEST_P(ParkedNonFiniteE2ETest, ANaNInEitherPartIsNamedAndFreesEverything) {
  const bool rest_in_arena = GetParam();
  DaemonProcess daemon;
  for (const int at : {-1, 1, 20}) {  // up_proj [8, 3] in F32 parks rows 0-1: element 1 is parked, 20 is not
    std::vector<float> values(24, 0.5f);
    if (at >= 0) values[at] = NAN;
    const std::string dir = daemon.model_root() + "/nan" + std::to_string(at);
    std::filesystem::create_directories(dir);
    WriteFile(dir + "/model.safetensors",
              ShardOf({{"model.layers.0.mlp.up_proj.weight", {"F32", {8, 3}, F32Bytes(values)}},
                       {"model.norm.weight", {"F32", {1024}, F32Bytes(std::vector<float>(1024, 1.0f))}}}));
    WriteFile(dir + "/config.json", "{}");
  }
  daemon.Start({"--park-per-tensor=true", "--log-level=debug",
                rest_in_arena ? "--park-rest-in-arena=true" : "--park-rest-in-arena=false"});
  // Without a NaN the rest takes the route under test.
  ASSERT_EQ(daemon.Ctl({"load", "clean", "--path=nan-1", "--scheme=per-tensor"}).exit_code, 0);
  ASSERT_EQ(daemon.Ctl({"unload", "clean"}).exit_code, 0);
  EXPECT_NE(daemon.log().find(rest_in_arena ? "\"rests_in_arena\":1" : "\"rests_in_arena\":0"), std::string::npos)
      << daemon.log();
  for (const int at : {1, 20}) {
    SCOPED_TRACE(at);
    CommandResult load = daemon.Ctl({"load", "m", "--path=nan" + std::to_string(at), "--scheme=per-tensor"});
    EXPECT_EQ(load.exit_code, 1);
    EXPECT_NE(load.err.find("INVALID_ARGUMENT: "), std::string::npos) << load.err;
    EXPECT_NE(load.err.find("model.layers.0.mlp.up_proj.weight"), std::string::npos) << load.err;
    EXPECT_NE(load.err.find("model.safetensors"), std::string::npos) << load.err;
    EXPECT_NE(load.err.find("element " + std::to_string(at) + " "), std::string::npos) << load.err;
    EXPECT_EQ(daemon.Metric("weightd_device_memory_used_bytes{device=\"0\"}"), 0);
  }
}

INSTANTIATE_TEST_SUITE_P(RestOnHost, ParkedNonFiniteE2ETest, ::testing::Values(false));
INSTANTIATE_TEST_SUITE_P(RestInArena, ParkedNonFiniteE2ETest, ::testing::Values(true));

// Layout vllm holds up_proj until gate_proj arrives (one scale over gate_up_proj): the
// NaN is still named, with its element and shard, under either scale scope, and nothing
// (neither the held part nor the arena) stays allocated.
TEST_F(NonFiniteE2ETest, AFusedPartIsNamedAsAnyOtherUnderLayoutVllm) {
  const std::string pushed = "--push=" + daemon_.model_root() + "/nan-fusable";
  for (const std::string source : {std::string("--path=nan-fusable"), pushed}) {
    for (const char* scope : {"--scale-scope=tensor", "--scale-scope=shard"}) {
      SCOPED_TRACE(source + " " + scope);
      CommandResult load = daemon_.Ctl({"load", "v", source, scope, "--layout=vllm"});
      EXPECT_EQ(load.exit_code, 1);
      EXPECT_NE(load.err.find("INVALID_ARGUMENT"), std::string::npos) << load.err;
      EXPECT_NE(load.err.find("tensor 'model.layers.0.mlp.up_proj.weight'"), std::string::npos) << load.err;
      EXPECT_NE(load.err.find("model.safetensors"), std::string::npos) << load.err;
      EXPECT_NE(load.err.find("element 1"), std::string::npos) << load.err;
      EXPECT_EQ(daemon_.Metric("weightd_device_memory_used_bytes{device=\"0\"}"), 0);
    }
  }
}

TEST_F(NonFiniteE2ETest, SaturateMapsNaNAndInfTo448UnderEveryScheme) {
  for (const std::string scheme : {"per-tensor", "per-channel", "block"}) {
    SCOPED_TRACE(scheme);
    const std::string id = "m-" + scheme, out = daemon_.dir() + "/export-" + scheme;
    CommandResult load = daemon_.Ctl({"load", id, "--path=nan", "--nonfinite=saturate", "--scheme=" + scheme});
    ASSERT_EQ(load.exit_code, 0) << load.err;
    ASSERT_EQ(daemon_.Ctl({"export", id, out}).exit_code, 0);
    // Row 0's amax is 1 and row 1's 2 (the non-finite values are left out): per
    // channel 1.0 -> 448; per tensor and block the amax is 2, so 1.0 -> 224 (0x76).
    const std::string q = TensorBytes(out + "/model.safetensors", "model.layers.0.mlp.up_proj.weight");
    ASSERT_EQ(q.size(), 6u);
    EXPECT_EQ(static_cast<uint8_t>(q[0]), scheme == "per-channel" ? 0x7E : 0x76);
    EXPECT_EQ(static_cast<uint8_t>(q[1]), 0x7E);  // NaN
    EXPECT_EQ(static_cast<uint8_t>(q[2]), 0x7E);  // +Inf
    EXPECT_EQ(static_cast<uint8_t>(q[3]), 0xFE);  // -2.0, the amax of row 1
    EXPECT_EQ(static_cast<uint8_t>(q[4]), 0xFE);  // -Inf
    CommandResult verify = daemon_.Ctl(
        {"verify", "--nonfinite=saturate", "--scheme=" + scheme, daemon_.model_root() + "/nan", out});
    EXPECT_EQ(verify.exit_code, 0) << verify.err;
    // weightctl quantize writes the same bytes.
    const std::string offline = daemon_.dir() + "/quantized-" + scheme;
    CommandResult quantize = RunCommand({BinPath("weightctl"), "--progress=false", "quantize", "--nonfinite=saturate",
                                         "--scheme=" + scheme, daemon_.model_root() + "/nan", offline});
    ASSERT_EQ(quantize.exit_code, 0) << quantize.err;
    EXPECT_EQ(ReadFile(offline + "/model.safetensors"), ReadFile(out + "/model.safetensors"));
  }
}

}  // namespace
}  // namespace weightd::testing
