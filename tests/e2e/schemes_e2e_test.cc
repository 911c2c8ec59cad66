// End to end, each FP8 scheme through the real daemon and weightctl: a load of a
// generated checkpoint (BF16, F16 and F32 tensors; 688-wide layers, so partial
// 128x128 blocks) exports the names, dtypes and shapes an FP8 checkpoint of that
// scheme carries, a config.json with the scheme's quantization_config, and bytes
// that `weightctl verify` finds equal to the CPU reference.
#include <algorithm>
#include <cstdlib>
#include <ostream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/e2e/checkpoint_files.h"
#include "tests/e2e/daemon_process.h"

namespace weightd::testing {
namespace {

using nlohmann::json;

struct SchemeCase {
  std::string scheme;
  std::string scale_name;               // the scale tensor's suffix after ".weight"
  json down_proj_scale_shape;           // of model.layers.0.mlp.down_proj.weight [256, 688]
};

void PrintTo(const SchemeCase& c, std::ostream* os) { *os << c.scheme; }

class SchemesE2ETest : public ::testing::TestWithParam<SchemeCase> {
 protected:
  void SetUp() override {
    CommandResult gen = RunCommand({BinPath("weightd-gen"), "--preset=tiny", "--out=" + daemon_.model_root() + "/tiny",
                                    "--shards=3", "--dtype=mixed"});
    ASSERT_EQ(gen.exit_code, 0) << gen.err;
    daemon_.Start();
  }

  // Loads tiny under the parameter's scheme, exports it and checks it with verify.
  std::string LoadExportVerify() {
    const std::string scheme = "--scheme=" + GetParam().scheme;
    const std::string out = daemon_.dir() + "/export-" + GetParam().scheme;
    CommandResult load = daemon_.Ctl({"load", "m", "--path=tiny", scheme});
    EXPECT_EQ(load.exit_code, 0) << load.err;
    CommandResult exported = daemon_.Ctl({"export", "m", out});
    EXPECT_EQ(exported.exit_code, 0) << exported.err;
    CommandResult verify = daemon_.Ctl({"verify", scheme, daemon_.model_root() + "/tiny", out});
    EXPECT_EQ(verify.exit_code, 0) << verify.err;
    EXPECT_NE(verify.out.find("14 quantized equal to the CPU reference"), std::string::npos) << verify.out;
    return out;
  }

  DaemonProcess daemon_;
};

TEST_P(SchemesE2ETest, ExportHoldsTheSchemesNamesDtypesAndShapes) {
  const json tensors = CheckpointTensors(LoadExportVerify());
  const std::string other_scale = GetParam().scale_name == "_scale" ? ".weight_scale_inv" : ".weight_scale";
  const std::string layer = "model.layers.0.";
  for (const char* linear : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                             "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}) {
    const std::string weight = layer + linear + ".weight";
    ASSERT_TRUE(tensors.contains(weight)) << weight;
    EXPECT_EQ(tensors[weight]["dtype"], "F8_E4M3") << weight;
    ASSERT_TRUE(tensors.contains(weight + GetParam().scale_name)) << weight;
    EXPECT_EQ(tensors[weight + GetParam().scale_name]["dtype"], "F32") << weight;
    EXPECT_FALSE(tensors.contains(layer + linear + other_scale)) << weight;
  }
  EXPECT_EQ(tensors[layer + "mlp.down_proj.weight"]["shape"], json({256, 688}));
  EXPECT_EQ(tensors[layer + "mlp.down_proj.weight" + GetParam().scale_name]["shape"],
            GetParam().down_proj_scale_shape);
  // Stored as they came: embeddings, lm_head, norms (1-D), in their own dtypes.
  EXPECT_EQ(tensors["model.embed_tokens.weight"]["dtype"], "BF16");
  EXPECT_EQ(tensors["lm_head.weight"]["dtype"], "F32");
  EXPECT_EQ(tensors["model.norm.weight"]["dtype"], "F16");
  EXPECT_EQ(tensors["model.norm.weight"]["shape"], json({256}));
  EXPECT_FALSE(tensors.contains("lm_head.weight_scale"));
  EXPECT_EQ(tensors.size(), 21u + 14u);  // every source tensor, and one scale per quantized weight
}

TEST_P(SchemesE2ETest, ConfigCarriesTheSchemesQuantizationConfig) {
  const json config = json::parse(ReadFile(LoadExportVerify() + "/config.json"), nullptr, false);
  ASSERT_TRUE(config.is_object());
  EXPECT_EQ(config["model_type"], "llama") << "the input's fields are kept";
  const json& q = config["quantization_config"];
  if (GetParam().scheme == "per-channel") {
    // compressed-tensors' FP8_DYNAMIC: channel-wise float8 weights, dynamic per-token activations.
    EXPECT_EQ(q["quant_method"], "compressed-tensors");
    EXPECT_EQ(q["format"], "float-quantized");
    EXPECT_EQ(q["quantization_status"], "compressed");
    const json& group = q["config_groups"]["group_0"];
    EXPECT_EQ(group["targets"], json({"Linear"}));
    EXPECT_EQ(group["weights"]["type"], "float");
    EXPECT_EQ(group["weights"]["num_bits"], 8);
    EXPECT_EQ(group["weights"]["strategy"], "channel");
    EXPECT_EQ(group["weights"]["symmetric"], true);
    EXPECT_EQ(group["weights"]["dynamic"], false);
    EXPECT_EQ(group["input_activations"]["strategy"], "token");
    EXPECT_EQ(group["input_activations"]["dynamic"], true);
    EXPECT_EQ(q["ignore"], json({"model.embed_tokens", "lm_head"}));
    return;
  }
  EXPECT_EQ(q["quant_method"], "fp8");
  EXPECT_EQ(q["activation_scheme"], "dynamic");
  EXPECT_EQ(q["ignored_layers"], json({"model.embed_tokens", "lm_head"}));
  if (GetParam().scheme == "block") {
    EXPECT_EQ(q["weight_block_size"], json({128, 128}));
    EXPECT_EQ(q["fmt"], "e4m3");
  } else {
    EXPECT_FALSE(q.contains("weight_block_size"));
  }
}

INSTANTIATE_TEST_SUITE_P(EveryScheme, SchemesE2ETest,
                         ::testing::Values(SchemeCase{"per-tensor", "_scale", json::array()},
                                           SchemeCase{"per-channel", "_scale", json({256, 1})},
                                           SchemeCase{"block", "_scale_inv", json({2, 6})}),
                         [](const ::testing::TestParamInfo<SchemeCase>& info) {
                           std::string name = info.param.scheme;
                           name.erase(std::remove(name.begin(), name.end(), '-'), name.end());
                           return name;
                         });

// --park-per-tensor: each per-tensor weight's first rows wait unquantized in its own
// FP8 destination, converted in place once the rest's amax is known (BF16, F16 and F32
// weights); the export is still the CPU reference, and the daemon says it parked.
// The count after `key` in the daemon's load_landed record.
uint64_t Landed(const std::string& log, const std::string& key) {
  const size_t at = log.find("\"" + key + "\":");
  EXPECT_NE(at, std::string::npos) << key << " missing from:\n" << log;
  return at == std::string::npos ? 0 : std::strtoull(log.c_str() + at + key.size() + 3, nullptr, 10);
}

class ParkingE2ETest : public ::testing::TestWithParam<bool> {};

// --park-per-tensor, and with --park-rest-in-arena (GetParam()): the rests held in
// the destinations of the tensors placed last.
TEST_P(ParkingE2ETest, APerTensorLoadThatParksExportsTheCpuReference) {
  const bool rest_in_arena = GetParam();
  DaemonProcess daemon;
  ASSERT_EQ(RunCommand({BinPath("weightd-gen"), "--preset=tiny", "--out=" + daemon.model_root() + "/tiny",
                        "--shards=3", "--dtype=mixed"})
                .exit_code,
            0);
  daemon.Start({"--park-per-tensor=true", "--log-level=debug",
                rest_in_arena ? "--park-rest-in-arena=true" : "--park-rest-in-arena=false"});
  const std::string out = daemon.dir() + "/export";
  CommandResult load = daemon.Ctl({"load", "m", "--path=tiny", "--scheme=per-tensor"});
  ASSERT_EQ(load.exit_code, 0) << load.err;
  ASSERT_EQ(daemon.Ctl({"export", "m", out}).exit_code, 0);
  CommandResult verify = daemon.Ctl({"verify", "--scheme=per-tensor", daemon.model_root() + "/tiny", out});
  EXPECT_EQ(verify.exit_code, 0) << verify.err;
  EXPECT_NE(verify.out.find("14 quantized equal to the CPU reference"), std::string::npos) << verify.out;
  daemon.Stop();
  EXPECT_EQ(Landed(daemon.log(), "parked_tensors"), 14u) << "every quantized weight parks";
  if (rest_in_arena) {
    EXPECT_GT(Landed(daemon.log(), "rests_in_arena"), 0u);
  } else {
    EXPECT_EQ(Landed(daemon.log(), "rests_in_arena"), 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(RestOnHost, ParkingE2ETest, ::testing::Values(false));
INSTANTIATE_TEST_SUITE_P(RestInArena, ParkingE2ETest, ::testing::Values(true));

TEST(ParkingE2EFlagsTest, TheRestInTheArenaNeedsParking) {
  DaemonProcess daemon;
  // Bounded: a daemon that accepted the flags would serve until killed.
  CommandResult run = RunCommand({BinPath("weightd"), "--park-per-tensor=false", "--park-rest-in-arena=true",
                                  "--listen=unix:" + daemon.dir() + "/w.sock", "--handle-socket=" + daemon.handle_socket(),
                                  "--metrics-address=", "--backend=host"},
                                 std::chrono::seconds(60));
  EXPECT_FALSE(run.timed_out) << "weightd started with --park-rest-in-arena and no parking";
  EXPECT_EQ(run.exit_code, 2) << run.err;
  EXPECT_NE(run.err.find("--park-rest-in-arena needs --park-per-tensor=true"), std::string::npos) << run.err;
}

}  // namespace
}  // namespace weightd::testing
