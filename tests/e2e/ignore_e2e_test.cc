// End to end, the ignore list: exact module or tensor names and "re:" regular
// expressions keep weights unquantized, given on weightctl's command line and in
// a LoadModel request made directly over gRPC; the config's ignore list names them.
#include <algorithm>
#include <string>
#include <vector>

#include "client/cpp/channel.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "tests/e2e/checkpoint_files.h"
#include "tests/e2e/daemon_process.h"
#include "weightd/v1/loader.grpc.pb.h"

namespace weightd::testing {
namespace {

using nlohmann::json;

// An exact module name, an exact tensor name, and a pattern matching both layers' k_proj and v_proj.
const std::vector<std::string> kIgnore = {"model.layers.0.mlp.down_proj", "model.layers.1.mlp.up_proj.weight",
                                          R"(re:.*self_attn\.[kv]_proj)"};
const std::vector<std::string> kIgnoredModules = {
    "model.layers.0.self_attn.k_proj", "model.layers.0.self_attn.v_proj", "model.layers.0.mlp.down_proj",
    "model.layers.1.self_attn.k_proj", "model.layers.1.self_attn.v_proj", "model.layers.1.mlp.up_proj"};

class IgnoreE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    CommandResult gen = RunCommand({BinPath("weightd-gen"), "--preset=tiny", "--out=" + checkpoint_, "--shards=2",
                                    "--dtype=bf16"});
    ASSERT_EQ(gen.exit_code, 0) << gen.err;
    daemon_.Start();
  }

  // Exports model `id` and checks: ignored weights stay BF16 without a scale, the
  // others are FP8, verify agrees, and the config lists exactly the ignored modules
  // (after the default exclusions, in checkpoint order).
  void ExpectIgnored(const std::string& id, const std::string& scheme) {
    const std::string out = daemon_.dir() + "/export-" + id;
    CommandResult exported = daemon_.Ctl({"export", id, out});
    ASSERT_EQ(exported.exit_code, 0) << exported.err;
    const json tensors = CheckpointTensors(out);
    for (const std::string& module : kIgnoredModules) {
      EXPECT_EQ(tensors[module + ".weight"]["dtype"], "BF16") << module;
      EXPECT_FALSE(tensors.contains(module + ".weight_scale")) << module;
    }
    EXPECT_EQ(tensors["model.layers.1.mlp.down_proj.weight"]["dtype"], "F8_E4M3");
    EXPECT_EQ(tensors["model.layers.0.mlp.up_proj.weight"]["dtype"], "F8_E4M3");
    std::string ignore_flag = "--ignore=";
    for (const std::string& entry : kIgnore) ignore_flag += (&entry == &kIgnore[0] ? "" : ",") + entry;
    CommandResult verify = daemon_.Ctl({"verify", "--scheme=" + scheme, ignore_flag, checkpoint_, out});
    EXPECT_EQ(verify.exit_code, 0) << verify.err;
    EXPECT_NE(verify.out.find("8 quantized"), std::string::npos) << verify.out;

    const json q = json::parse(ReadFile(out + "/config.json"))["quantization_config"];
    std::vector<std::string> listed = q.contains("ignore") ? q["ignore"] : q["ignored_layers"];
    std::vector<std::string> expected = {"model.embed_tokens"};
    expected.insert(expected.end(), kIgnoredModules.begin(), kIgnoredModules.end());
    expected.push_back("lm_head");
    std::sort(listed.begin(), listed.end());
    std::sort(expected.begin(), expected.end());
    EXPECT_EQ(listed, expected);
  }

  DaemonProcess daemon_;
  std::string checkpoint_ = daemon_.model_root() + "/tiny";
};

TEST_F(IgnoreE2ETest, ExactNamesAndRegularExpressionsFromTheCommandLine) {
  std::string flag = "--ignore=" + kIgnore[0] + "," + kIgnore[1] + "," + kIgnore[2];
  CommandResult load = daemon_.Ctl({"load", "cli", "--path=tiny", "--scheme=per-channel", flag});
  ASSERT_EQ(load.exit_code, 0) << load.err;
  ExpectIgnored("cli", "per-channel");
}

TEST_F(IgnoreE2ETest, ExactNamesAndRegularExpressionsInLoadModel) {
  auto stub = v1::Loader::NewStub(client::MakeChannel(daemon_.grpc_address()));
  v1::LoadModelRequest request;
  request.set_model_id("rpc");
  request.mutable_source()->mutable_path()->set_path("tiny");
  request.mutable_quantization()->set_scheme(v1::SCHEME_BLOCK);
  for (const std::string& entry : kIgnore) request.mutable_quantization()->add_ignore(entry);
  grpc::ClientContext context;
  auto reader = stub->LoadModel(&context, request);
  v1::LoadEvent event;
  while (reader->Read(&event)) {
  }
  grpc::Status status = reader->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  ExpectIgnored("rpc", "block");
}

TEST_F(IgnoreE2ETest, MalformedPatternIsInvalidArgumentNamingIt) {
  CommandResult load = daemon_.Ctl({"load", "bad", "--path=tiny", "--ignore=re:(unclosed"});
  EXPECT_EQ(load.exit_code, 1);
  EXPECT_NE(load.err.find("INVALID_ARGUMENT"), std::string::npos) << load.err;
  EXPECT_NE(load.err.find("re:(unclosed"), std::string::npos) << load.err;
}

}  // namespace
}  // namespace weightd::testing
