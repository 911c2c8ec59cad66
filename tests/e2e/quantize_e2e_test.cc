// End to end, `weightctl quantize IN OUT`: a sharded checkpoint directory keeps
// its shard names and gets a new index, config.json gains quantization_config,
// the small files are copied, and `weightctl verify` finds every tensor equal to
// the CPU reference; a single .safetensors file becomes OUT/model.safetensors;
// memory stays far below the model's size; progress is drawn on a terminal.
#include <filesystem>
#include <string>

#include "gtest/gtest.h"
#include "tests/e2e/checkpoint_files.h"
#include "tests/e2e/daemon_process.h"
#include "tests/e2e/sanitizers.h"

namespace weightd::testing {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

class QuantizeE2ETest : public ::testing::Test {
 protected:
  void TearDown() override { fs::remove_all(dir_); }

  // weightd-gen into dir_/name; returns its path.
  std::string Generate(const std::string& name, const std::vector<std::string>& flags) {
    std::vector<std::string> argv = {BinPath("weightd-gen"), "--out=" + dir_ + "/" + name};
    argv.insert(argv.end(), flags.begin(), flags.end());
    CommandResult gen = RunCommand(argv);
    EXPECT_EQ(gen.exit_code, 0) << gen.err;
    return dir_ + "/" + name;
  }

  CommandResult Quantize(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {BinPath("weightctl"), "--progress=false", "quantize"};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv);
  }

  std::string dir_ = [] {
    char path[] = "/tmp/weightd-quantize-e2e-XXXXXX";
    return std::string(::mkdtemp(path));
  }();
};

TEST_F(QuantizeE2ETest, ShardedDirectoryEveryScheme) {
  const std::string in = Generate("tiny", {"--preset=tiny", "--shards=3", "--dtype=mixed"});
  WriteFile(in + "/tokenizer.json", R"({"version": "1.0"})");
  WriteFile(in + "/generation_config.json", R"({"do_sample": false})");
  fs::create_directories(in + "/1_Pooling");
  WriteFile(in + "/1_Pooling/config.json", R"({"pooling_mode_mean_tokens": true})");
  fs::create_directories(in + "/.cache");
  WriteFile(in + "/.cache/lock", "x");
  for (const std::string scheme : {"per-tensor", "per-channel", "block"}) {
    SCOPED_TRACE(scheme);
    const std::string out = dir_ + "/out-" + scheme;
    CommandResult result = Quantize({"--scheme=" + scheme, in, out});
    ASSERT_EQ(result.exit_code, 0) << result.err;
    EXPECT_NE(result.out.find("21 tensors (14 to FP8)"), std::string::npos) << result.out;

    // The index maps every output tensor to the shard that holds it; total_size is the data bytes.
    const json index = json::parse(ReadFile(out + "/model.safetensors.index.json"));
    const json tensors = CheckpointTensors(out);
    EXPECT_EQ(index["weight_map"].size(), tensors.size());
    uint64_t data_bytes = 0;
    for (const auto& [name, shard] : index["weight_map"].items()) {
      EXPECT_TRUE(SafetensorsHeader(out + "/" + shard.get<std::string>()).contains(name)) << name;
    }
    for (const auto& [name, t] : tensors.items()) {
      data_bytes += t["data_offsets"][1].get<uint64_t>() - t["data_offsets"][0].get<uint64_t>();
    }
    EXPECT_EQ(index["metadata"]["total_size"], data_bytes);
    EXPECT_TRUE(fs::exists(out + "/model-00002-of-00003.safetensors"));

    const json config = json::parse(ReadFile(out + "/config.json"));
    EXPECT_EQ(config["model_type"], "llama");
    EXPECT_TRUE(config.contains("quantization_config"));
    EXPECT_EQ(ReadFile(out + "/tokenizer.json"), ReadFile(in + "/tokenizer.json"));
    EXPECT_EQ(ReadFile(out + "/generation_config.json"), ReadFile(in + "/generation_config.json"));
    EXPECT_EQ(ReadFile(out + "/1_Pooling/config.json"), ReadFile(in + "/1_Pooling/config.json"));
    EXPECT_FALSE(fs::exists(out + "/.cache")) << "hidden folders are not copied";

    CommandResult verify = RunCommand({BinPath("weightctl"), "verify", "--scheme=" + scheme, in, out});
    EXPECT_EQ(verify.exit_code, 0) << verify.err;
  }
}

TEST_F(QuantizeE2ETest, SingleFileBecomesModelSafetensors) {
  const std::string in = Generate("one", {"--preset=tiny", "--dtype=bf16"});
  const std::string file = dir_ + "/weights.safetensors";
  fs::rename(in + "/model.safetensors", file);
  const std::string out = dir_ + "/out";
  CommandResult result = Quantize({"--scheme=block", "--ignore=re:.*down_proj", file, out});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_TRUE(fs::exists(out + "/model.safetensors"));
  EXPECT_FALSE(fs::exists(out + "/model.safetensors.index.json"));
  const json q = json::parse(ReadFile(out + "/config.json"))["quantization_config"];
  EXPECT_EQ(q["weight_block_size"], json({128, 128}));
  EXPECT_EQ(CheckpointTensors(out)["model.layers.1.mlp.down_proj.weight"]["dtype"], "BF16");
  CommandResult verify = RunCommand(
      {BinPath("weightctl"), "verify", "--scheme=block", "--ignore=re:.*down_proj", file, out + "/model.safetensors"});
  EXPECT_EQ(verify.exit_code, 0) << verify.err;
}

TEST_F(QuantizeE2ETest, OutputInsideTheInputIsNotCopiedIntoItself) {
  const std::string in = Generate("tiny", {"--preset=tiny"});
  WriteFile(in + "/tokenizer.json", "{}");
  for (int run = 0; run < 2; ++run) {  // the second run finds the first's output inside the input
    CommandResult result = Quantize({in, in + "/fp8"});
    ASSERT_EQ(result.exit_code, 0) << result.err;
  }
  EXPECT_TRUE(fs::exists(in + "/fp8/tokenizer.json"));
  EXPECT_FALSE(fs::exists(in + "/fp8/fp8"));
}

TEST_F(QuantizeE2ETest, PeakMemoryStaysFarBelowTheModelSize) {
  // 178 MB of BF16, its largest tensors 64 MiB (embeddings, lm_head, copied through an
  // 8 MiB buffer) and its largest quantized weight 5.5 MiB: the process should hold a
  // few tensors, not the model.
  const std::string in = Generate("small", {"--preset=small", "--layers=2", "--shards=2"});
  uint64_t model_bytes = 0;
  for (const auto& entry : fs::directory_iterator(in)) model_bytes += entry.file_size();
  CommandResult result = Quantize({"--scheme=per-channel", in, dir_ + "/out"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  ASSERT_GT(result.peak_rss_bytes, 0);
  // ThreadSanitizer's shadow memory puts the process over the bound (sanitizers.h).
  if (!kThreadSanitizer) {
    EXPECT_LT(static_cast<uint64_t>(result.peak_rss_bytes), model_bytes / 3)
        << "peak RSS " << result.peak_rss_bytes << " for a model of " << model_bytes << " bytes";
  }
}

TEST_F(QuantizeE2ETest, ProgressIsDrawnOnATerminalOnly) {
  const std::string in = Generate("tiny", {"--preset=tiny"});
  CommandResult terminal = RunInTerminal({BinPath("weightctl"), "quantize", in, dir_ + "/a"});
  ASSERT_EQ(terminal.exit_code, 0) << terminal.out;
  EXPECT_NE(terminal.out.find("\r\033[K"), std::string::npos) << terminal.out;
  EXPECT_NE(terminal.out.find("tensors 21/21"), std::string::npos) << terminal.out;
  CommandResult piped = RunCommand({BinPath("weightctl"), "quantize", in, dir_ + "/b"});
  ASSERT_EQ(piped.exit_code, 0) << piped.err;
  EXPECT_EQ(piped.err.find('\033'), std::string::npos) << piped.err;
}

TEST_F(QuantizeE2ETest, ErrorsNameWhatIsWrong) {
  CommandResult missing = Quantize({dir_ + "/nothing", dir_ + "/out"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("nothing"), std::string::npos) << missing.err;
  const std::string in = Generate("tiny", {"--preset=tiny"});
  CommandResult same = Quantize({in, in});
  EXPECT_EQ(same.exit_code, 1);
  EXPECT_NE(same.err.find("output directory"), std::string::npos) << same.err;
  CommandResult usage = Quantize({in});
  EXPECT_EQ(usage.exit_code, 2);
  CommandResult scheme = Quantize({"--scheme=int4", in, dir_ + "/x"});
  EXPECT_EQ(scheme.exit_code, 1);
  EXPECT_NE(scheme.err.find("--scheme=int4"), std::string::npos) << scheme.err;
}

}  // namespace
}  // namespace weightd::testing
