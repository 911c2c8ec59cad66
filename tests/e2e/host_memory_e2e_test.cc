// End to end, a slow consumer: eight streams push a model into a device that
// takes writes slowly (--host-write-bandwidth), so pushed bytes pile up on the
// host unless flow control holds the clients back. Under --host-memory-limit the
// pushed bytes the daemon holds stay under the limit plus one message per stream
// (services/load/host_budget.h, its metric), and its peak resident memory grows
// by the model, the limit and a fixed amount per stream (gRPC's buffers of the
// message being received); without a limit every stream gathers all its tensors
// at once. A tensor larger than the limit's gathering share fails its load.
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <string>

#include "gtest/gtest.h"
#include "tests/e2e/checkpoint_files.h"
#include "tests/e2e/daemon_process.h"
#include "tests/e2e/sanitizers.h"

namespace weightd::testing {
namespace {

constexpr int kShards = 8;
constexpr int kTensorsPerShard = 2;
constexpr int kRows = 4096, kCols = 2048;  // 32 MiB of F32: each is gathered, then quantized
constexpr double kMiB = 1 << 20;

// kShards files of kTensorsPerShard quantized tensors each, with their index.
void WriteModel(const std::string& dir) {
  std::filesystem::create_directories(dir);
  std::string index = R"({"metadata": {}, "weight_map": {)";
  std::string values(static_cast<size_t>(kRows) * kCols * 4, '\0');
  for (size_t i = 0; i < values.size(); i += 4) values[i + 2] = static_cast<char>(0x80 + i % 64);  // finite, varied
  for (int s = 0; s < kShards; ++s) {
    char file[64];
    std::snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", s + 1, kShards);
    std::map<std::string, RawTensor> tensors;
    for (int t = 0; t < kTensorsPerShard; ++t) {
      const std::string name = "model.layers." + std::to_string(s * kTensorsPerShard + t) + ".mlp.up_proj.weight";
      tensors[name] = {"F32", {kRows, kCols}, values};
      index += (index.back() == '{' ? "\"" : ",\"") + name + "\": \"" + file + "\"";
    }
    WriteFile(dir + "/" + file, ShardOf(tensors));
  }
  WriteFile(dir + "/model.safetensors.index.json", index + "}}");
  WriteFile(dir + "/config.json", "{}");
}

// The model (512 MiB), written once for the test program and removed at its end.
class ModelFiles : public ::testing::Environment {
 public:
  void SetUp() override {
    char templ[] = "/tmp/weightd-host-memory-XXXXXX";
    dir_ = ::mkdtemp(templ);
    WriteModel(dir_ + "/slow");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  static std::string dir_;
};
std::string ModelFiles::dir_;
const ::testing::Environment* const kModelFiles = ::testing::AddGlobalTestEnvironment(new ModelFiles);

const std::string& ModelDir() { return ModelFiles::dir_; }

struct PushMemory {
  double rss_growth = 0;     // peak resident memory over the resident model
  double buffers_peak = 0;   // weightd_host_push_buffer_peak_bytes
};

// Pushes the model (one stream per shard) into a daemon with `flags`.
PushMemory Push(const std::vector<std::string>& flags) {
  DaemonProcess daemon;
  std::vector<std::string> all = flags;
  all.push_back("--model-root=" + ModelDir());
  daemon.Start(all);
  const double before = daemon.PeakResidentBytes();
  CommandResult load = daemon.Ctl({"load", "slow", "--push=" + ModelDir() + "/slow"});
  EXPECT_EQ(load.exit_code, 0) << load.err;
  const double resident = daemon.Metric("weightd_device_memory_used_bytes{device=\"0\"}");
  PushMemory memory{daemon.PeakResidentBytes() - before - resident,
                    daemon.Metric("weightd_host_push_buffer_peak_bytes")};
  std::printf("%s: resident %.1f MiB, peak resident growth over it %.1f MiB, push buffers' peak %.1f MiB\n",
              flags[0].c_str(), resident / kMiB, memory.rss_growth / kMiB, memory.buffers_peak / kMiB);
  return memory;
}

TEST(HostMemoryE2ETest, ASlowDeviceKeepsPushedBytesUnderTheLimitThroughFlowControl) {
  const std::string slow = "--host-write-bandwidth=256MiB";
  const PushMemory limited = Push({"--host-memory-limit=64MiB", slow});
  const PushMemory unlimited = Push({"--host-memory-limit=0", slow});
  // What the daemon holds, exactly: the limit and one 4 MiB message per stream.
  EXPECT_LE(limited.buffers_peak, 64 * kMiB + kShards * 4 * kMiB);
  EXPECT_GT(limited.buffers_peak, 32 * kMiB);  // the limit was what held the streams back
  if (!kAddressSanitizer && !kThreadSanitizer) {  // their quarantine and shadow memory stay resident
    // Resident memory: the limit is what keeps it down. No absolute bound: beyond the
    // buffers counted above it holds gRPC's buffers of the messages being received (up
    // to 24 MiB a stream, measured) and pages malloc keeps in its per-thread arenas,
    // whose amount at the peak depends on how the streams' threads were scheduled:
    // 256.8 and 299.7 MiB were measured on machines busy with other work, against 256
    // MiB on a quiet one. The buffers' peak above is the exact check.
    // The margin: without the limit the eight streams gather their 32 MiB tensors at
    // once (growth 560 to 625 MiB measured), with it 125 to 240 MiB (the most with three
    // CPU hogs beside the test); 192 MiB leaves over 130 MiB of that scheduling noise
    // either way, and still fails if the limit stopped holding back the gathering (two
    // tensors per stream, 512 MiB). gRPC's receive buffers are in both runs: no gRPC
    // setting bounds them without resetting streams (docs/running.md).
    EXPECT_GT(unlimited.rss_growth, limited.rss_growth + 192 * kMiB);
  }
}

TEST(HostMemoryE2ETest, ATensorLargerThanTheGatheringShareFailsItsLoadNamingIt) {
  DaemonProcess daemon;
  daemon.Start({"--host-memory-limit=32MiB", "--model-root=" + ModelDir()});  // 24 MiB for gathered tensors
  CommandResult load = daemon.Ctl({"load", "slow", "--push=" + ModelDir() + "/slow"});
  EXPECT_EQ(load.exit_code, 1);
  EXPECT_NE(load.err.find("RESOURCE_EXHAUSTED"), std::string::npos) << load.err;
  EXPECT_NE(load.err.find(".mlp.up_proj.weight'"), std::string::npos) << load.err;
  EXPECT_NE(load.err.find("--host-memory-limit"), std::string::npos) << load.err;
  EXPECT_EQ(daemon.Metric("weightd_device_memory_used_bytes{device=\"0\"}"), 0);
  // The daemon serves the next load.
  EXPECT_EQ(daemon.Ctl({"load", "next", "--path=slow", "--scheme=none"}).exit_code, 0);
}

}  // namespace
}  // namespace weightd::testing
