// The daemon on real GPUs, end to end: loads into VMM and legacy-IPC arenas,
// another process (weightctl export, and this test) imports the memory and reads
// the CPU reference's bytes; the import outlives a daemon restart; a 1 GiB BF16
// tensor loads with device memory growing by no more than its FP8 footprint plus
// a small constant. Skips where no GPU is visible.
#include <cuda_runtime.h>
#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <thread>

#include "client/cpp/cuda_mapping.h"
#include "client/cpp/lease.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "services/device/cuda/cuda_backend.h"
#include "services/safetensors/writer.h"
#include "tests/e2e/daemon_process.h"

namespace weightd::testing {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

uint64_t DeviceUsedBytes() {
  size_t free_bytes = 0, total_bytes = 0;
  cudaMemGetInfo(&free_bytes, &total_bytes);
  return total_bytes - free_bytes;
}

class CudaE2ETest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    if (cuda::VisibleDeviceCount() == 0) GTEST_SKIP() << "no CUDA device visible: GPU tests skipped";
    cudaSetDevice(0);
    cudaFree(nullptr);
  }
  void StartDaemon() { daemon_.Start({"--backend=cuda", std::string("--cuda-handles=") + GetParam()}); }
  void ExpectOk(const CommandResult& r) { EXPECT_EQ(r.exit_code, 0) << r.out << r.err; }

  DaemonProcess daemon_;
};

TEST_P(CudaE2ETest, PathAndPushLoadsExportBytesEqualToTheCpuReference) {
  const std::string checkpoint = daemon_.model_root() + "/tiny";
  ExpectOk(RunCommand({BinPath("weightd-gen"), "--preset=tiny", "--out=" + checkpoint, "--shards=3", "--dtype=mixed"}));
  StartDaemon();
  ExpectOk(daemon_.Ctl({"load", "a", "--path=tiny"}));
  ExpectOk(daemon_.Ctl({"load", "b", "--push=" + checkpoint}));
  CommandResult manifest = daemon_.Ctl({"manifest", "a"});
  EXPECT_NE(manifest.out.find(std::string(GetParam()) == "vmm" ? "CUDA_VMM_FD" : "CUDA_IPC"), std::string::npos)
      << manifest.out;
  ExpectOk(daemon_.Ctl({"export", "a", daemon_.dir() + "/a"}));
  ExpectOk(daemon_.Ctl({"export", "b", daemon_.dir() + "/b"}));
  EXPECT_TRUE(ReadFile(daemon_.dir() + "/a/model.safetensors") == ReadFile(daemon_.dir() + "/b/model.safetensors"));
  CommandResult verify = daemon_.Ctl({"verify", checkpoint, daemon_.dir() + "/a"});
  ExpectOk(verify);
  std::printf("%s", verify.out.c_str());
  ExpectOk(daemon_.Ctl({"unload", "a"}));
  ExpectOk(daemon_.Ctl({"unload", "b"}));
}

INSTANTIATE_TEST_SUITE_P(Handles, CudaE2ETest, ::testing::Values("vmm", "ipc"));

// --scales-from-slots: per-channel and block scales taken from the staging slots'
// copies (a small ring, so tensors are many chunks of whole tile rows; tile rows
// that do not fit a slot take their scales first). The bytes are the CPU reference's.
class CudaScalesFromSlotsTest : public CudaE2ETest {};

TEST_P(CudaScalesFromSlotsTest, PerChannelAndBlockLoadsExportTheCpuReference) {
  const std::string checkpoint = daemon_.model_root() + "/tiny";
  ExpectOk(RunCommand({BinPath("weightd-gen"), "--preset=tiny", "--out=" + checkpoint, "--shards=3", "--dtype=mixed"}));
  daemon_.Start({"--backend=cuda", "--scales-from-slots=true", "--staging-ring-bytes=1MiB", "--staging-slots=4",
                 "--log-level=debug"});
  for (const char* scheme : {"per-channel", "block"}) {
    SCOPED_TRACE(scheme);
    const std::string model = std::string("m-") + scheme;
    ExpectOk(daemon_.Ctl({"load", model, "--path=tiny", std::string("--scheme=") + scheme}));
    ExpectOk(daemon_.Ctl({"export", model, daemon_.dir() + "/" + model}));
    CommandResult verify =
        daemon_.Ctl({"verify", std::string("--scheme=") + scheme, checkpoint, daemon_.dir() + "/" + model});
    ExpectOk(verify);
    ExpectOk(daemon_.Ctl({"unload", model}));
  }
  // The scales were taken in the slots: a ring's log line counts the chunks.
  const std::string log = daemon_.log(), key = "\"scaled_chunks\":";
  bool taken = false;
  for (size_t at = log.find(key); at != std::string::npos; at = log.find(key, at + 1)) {
    taken = taken || std::strtoull(log.c_str() + at + key.size(), nullptr, 10) > 0;
  }
  EXPECT_TRUE(taken) << "no scale was taken in a slot";
}

INSTANTIATE_TEST_SUITE_P(Slots, CudaScalesFromSlotsTest, ::testing::Values("vmm"));

// --pin-pushed-tensors: a pushed tensor gathered on the host is pinned while it is
// placed and the copy engines read it in place (a small ring, so most tensors take
// many chunks, each from the gathered buffer while the next tensor is gathered
// into another); with false every byte goes through the staging slots. The bytes
// are the CPU reference's for every scheme either way, and the ring copied bytes
// in place only where pinned.
class CudaPinnedPushTest : public CudaE2ETest {
 protected:
  // Pushes a small checkpoint in every scheme with --pin-pushed-tensors=`pin`,
  // verifies each against the CPU reference; the bytes the ring copied in place.
  uint64_t PushEverySchemeAndVerify(const std::string& pin) {
    const std::string checkpoint = daemon_.model_root() + "/small";
    // Its weights are 2-8 MiB of BF16 (pinned: at least 1 MiB of whole pages).
    ExpectOk(RunCommand({BinPath("weightd-gen"), "--preset=small", "--layers=2", "--out=" + checkpoint,
                         "--shards=2", "--dtype=bf16"}));
    daemon_.Start({"--backend=cuda", "--pin-pushed-tensors=" + pin, "--staging-ring-bytes=1MiB",
                   "--staging-slots=4", "--log-level=debug"});
    for (const char* scheme : {"per-tensor", "per-channel", "block"}) {
      SCOPED_TRACE(scheme);
      const std::string model = std::string("m-") + scheme;
      ExpectOk(daemon_.Ctl({"load", model, "--push=" + checkpoint, std::string("--scheme=") + scheme}));
      ExpectOk(daemon_.Ctl({"export", model, daemon_.dir() + "/" + model}));
      CommandResult verify =
          daemon_.Ctl({"verify", std::string("--scheme=") + scheme, checkpoint, daemon_.dir() + "/" + model});
      ExpectOk(verify);
      EXPECT_NE(verify.out.find("quantized equal to the CPU reference"), std::string::npos) << verify.out;
      ExpectOk(daemon_.Ctl({"unload", model}));
    }
    const std::string log = daemon_.log(), key = "\"in_place_bytes\":";
    uint64_t in_place = 0;
    for (size_t at = log.find(key); at != std::string::npos; at = log.find(key, at + 1)) {
      in_place += std::strtoull(log.c_str() + at + key.size(), nullptr, 10);
    }
    return in_place;
  }
};

TEST_P(CudaPinnedPushTest, PushedTensorsCopiedInPlaceExportTheCpuReference) {
  const uint64_t in_place = PushEverySchemeAndVerify("true");
  if (daemon_.log().find("source_pin_refused") != std::string::npos) {
    GTEST_SKIP() << "this driver pins no read-only memory";
  }
  EXPECT_GT(in_place, 0u) << "no pushed byte was copied in place";
}

TEST_P(CudaPinnedPushTest, PushedTensorsCopiedThroughTheSlotsExportTheCpuReference) {
  EXPECT_EQ(PushEverySchemeAndVerify("false"), 0u) << "a pushed byte was copied in place";
}

INSTANTIATE_TEST_SUITE_P(Pinned, CudaPinnedPushTest, ::testing::Values("vmm"));

// --park-per-tensor: each per-tensor weight's first rows go to its FP8 destination
// unquantized (their amax taken from the staging slots) and are converted there in
// place, in runs of at most a slot (a 256 KiB ring of 64 KiB slots, so most tensors
// take an in-place run after the first); the rest is quantized as it is copied. The
// bytes are the CPU reference's, and every quantized weight parked. With
// --park-rest-in-arena (the parameter) the rest waits on the device too, in the
// destinations of the tensors placed last, and is quantized from there.
class CudaParkingTest : public CudaE2ETest {};

uint64_t LandedCount(const std::string& log, const std::string& key) {
  const size_t at = log.find("\"" + key + "\":");
  EXPECT_NE(at, std::string::npos) << key;
  return at == std::string::npos ? 0 : std::strtoull(log.c_str() + at + key.size() + 3, nullptr, 10);
}

TEST_P(CudaParkingTest, APerTensorLoadThatParksExportsTheCpuReference) {
  const std::string checkpoint = daemon_.model_root() + "/tiny";
  ExpectOk(RunCommand({BinPath("weightd-gen"), "--preset=tiny", "--out=" + checkpoint, "--shards=3", "--dtype=mixed"}));
  daemon_.Start({"--backend=cuda", "--park-per-tensor=true", "--staging-ring-bytes=256KiB", "--staging-slots=4",
                 "--log-level=debug", GetParam()});
  ExpectOk(daemon_.Ctl({"load", "m", "--path=tiny", "--scheme=per-tensor"}));
  ExpectOk(daemon_.Ctl({"export", "m", daemon_.dir() + "/m"}));
  CommandResult verify = daemon_.Ctl({"verify", "--scheme=per-tensor", checkpoint, daemon_.dir() + "/m"});
  ExpectOk(verify);
  EXPECT_NE(verify.out.find("14 quantized equal to the CPU reference"), std::string::npos) << verify.out;
  ExpectOk(daemon_.Ctl({"unload", "m"}));
  EXPECT_EQ(LandedCount(daemon_.log(), "parked_tensors"), 14u);
  const bool rest_in_arena = std::string(GetParam()) == "--park-rest-in-arena=true";
  EXPECT_EQ(LandedCount(daemon_.log(), "rests_in_arena") > 0, rest_in_arena);
}

INSTANTIATE_TEST_SUITE_P(Parking, CudaParkingTest,
                         ::testing::Values("--park-rest-in-arena=false", "--park-rest-in-arena=true"));

class CudaIpcTest : public CudaE2ETest {};

// A legacy IPC handle opens the memory without a lease (nothing would keep the
// model from being freed under its user): only a lease hands it out.
TEST_P(CudaIpcTest, TheLegacyHandleComesOnlyWithALease) {
  ExpectOk(RunCommand({BinPath("weightd-gen"), "--preset=tiny", "--out=" + daemon_.model_root() + "/tiny"}));
  StartDaemon();
  ExpectOk(daemon_.Ctl({"load", "m", "--path=tiny"}));
  CommandResult manifest = daemon_.Ctl({"manifest", "m", "--json"});
  ExpectOk(manifest);
  EXPECT_NE(manifest.out.find("HANDLE_TYPE_CUDA_IPC"), std::string::npos) << manifest.out;
  EXPECT_NE(manifest.out.find("\"cuda_ipc_handle\": \"\""), std::string::npos) << manifest.out;  // empty
  auto lease = client::Lease::Attach(daemon_.handle_socket(), "m", 0);
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_EQ(lease->manifest().allocations(0).cuda_ipc_handle().size(), sizeof(cudaIpcMemHandle_t));
  auto mapping = client::CudaMapping::Import(lease->manifest().allocations(0), -1, 0);
  ASSERT_TRUE(mapping.ok()) << mapping.status();
}

INSTANTIATE_TEST_SUITE_P(Ipc, CudaIpcTest, ::testing::Values("ipc"));

class CudaVmmTest : public CudaE2ETest {};

TEST_P(CudaVmmTest, AnImportOutlivesTheDaemonAndIsFreedByItsLastHolder) {
  const std::string checkpoint = daemon_.model_root() + "/tiny";
  ExpectOk(RunCommand({BinPath("weightd-gen"), "--preset=tiny", "--out=" + checkpoint, "--shards=2", "--dtype=bf16"}));
  const uint64_t used_before = DeviceUsedBytes();
  StartDaemon();
  ExpectOk(daemon_.Ctl({"load", "m", "--path=tiny"}));
  std::vector<uint8_t> before, after;
  {
    auto lease = client::Lease::Attach(daemon_.handle_socket(), "m", 0);
    ASSERT_TRUE(lease.ok()) << lease.status();
    const v1::Allocation& allocation = lease->manifest().allocations(0);
    auto mapping = client::CudaMapping::Import(allocation, lease->fds()[0].get(), 0);
    ASSERT_TRUE(mapping.ok()) << mapping.status();
    before.resize(allocation.size());
    after.resize(allocation.size());
    ASSERT_EQ(cudaMemcpy(before.data(), mapping->device_pointer(), before.size(), cudaMemcpyDeviceToHost), cudaSuccess);

    ASSERT_EQ(daemon_.Stop(), 0);  // the daemon goes away (a sidecar restart)
    ASSERT_EQ(cudaMemcpy(after.data(), mapping->device_pointer(), after.size(), cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_TRUE(before == after) << "the imported memory changed when the daemon exited";
    EXPECT_GT(DeviceUsedBytes(), used_before);
    daemon_.Start({"--backend=cuda"});  // a restarted daemon comes up beside the held memory
  }
  ASSERT_EQ(daemon_.Stop(), 0);
  // The last holder released its import: the memory is back with the driver.
  const uint64_t used_after = DeviceUsedBytes();
  std::printf("device memory used by others: before %llu, after %llu bytes\n",
              static_cast<unsigned long long>(used_before), static_cast<unsigned long long>(used_after));
  EXPECT_LE(used_after, used_before + (4u << 20));
}

INSTANTIATE_TEST_SUITE_P(Vmm, CudaVmmTest, ::testing::Values("vmm"));

// A checkpoint whose largest tensor is 1 GiB of BF16.
void WriteLargeCheckpoint(const std::string& dir) {
  std::filesystem::create_directories(dir);
  const int64_t rows = 32768, cols = 16384;
  std::vector<safetensors::TensorSpec> specs = {
      {"model.layers.0.mlp.up_proj.weight", kernels::DType::kBF16, {rows, cols}},
      {"model.layers.0.post_attention_layernorm.weight", kernels::DType::kBF16, {cols}}};
  auto writer = safetensors::SafetensorsWriter::Create(dir + "/model.safetensors", specs);
  ASSERT_TRUE(writer.ok()) << writer.status();
  std::vector<uint16_t> row(static_cast<size_t>(cols));
  std::mt19937 rng(7);
  for (int64_t r = 0; r < rows; ++r) {
    for (auto& v : row) v = static_cast<uint16_t>(0x3C00 + (rng() & 0x3FF)) ^ static_cast<uint16_t>((rng() & 1) << 15);
    ASSERT_TRUE((*writer)->Append(std::string_view(reinterpret_cast<const char*>(row.data()), row.size() * 2)).ok());
  }
  ASSERT_TRUE((*writer)->Append(std::string_view(reinterpret_cast<const char*>(row.data()), row.size() * 2)).ok());
  ASSERT_TRUE((*writer)->Close().ok());
  std::ofstream(dir + "/config.json") << "{\"model_type\": \"llama\"}";
}

TEST_P(CudaVmmTest, PeakGrowthIsTheFp8FootprintPlusASmallConstant) {
  WriteLargeCheckpoint(daemon_.model_root() + "/large");
  StartDaemon();
  std::atomic<bool> sampling{true};
  std::atomic<uint64_t> peak{0};
  const uint64_t baseline = DeviceUsedBytes();
  std::thread sampler([&] {
    cudaSetDevice(0);
    while (sampling.load()) {
      uint64_t used = DeviceUsedBytes();
      if (used > peak.load()) peak.store(used);
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
  });
  CommandResult load = daemon_.Ctl({"load", "large", "--path=large"});
  sampling.store(false);
  sampler.join();
  ExpectOk(load);
  CommandResult manifest = daemon_.Ctl({"manifest", "large", "--json"});
  auto json = nlohmann::json::parse(manifest.out);
  auto field = json["resident_bytes"];
  const uint64_t resident = field.is_string() ? std::stoull(field.get<std::string>()) : field.get<uint64_t>();
  const uint64_t growth = peak.load() - baseline;
  const uint64_t bound = resident + (64ull << 20);
  std::printf("1 GiB BF16 tensor: FP8 footprint %llu bytes, peak growth (driver's view) %llu bytes, "
              "bound %llu bytes; growth - footprint = %.1f MiB; load: %s",
              static_cast<unsigned long long>(resident), static_cast<unsigned long long>(growth),
              static_cast<unsigned long long>(bound), (static_cast<double>(growth) - resident) / (1 << 20),
              load.out.c_str());
  EXPECT_LE(growth, bound);
  EXPECT_GE(growth, resident / 2) << "the sampler missed the load";
}

}  // namespace
}  // namespace weightd::testing
