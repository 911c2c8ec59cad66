// End to end: the real daemon on two host devices, scraped over HTTP. Every
// value is checked exactly against what the test can compute on its own: file
// sizes of the checkpoint, its safetensors headers, and the manifests the
// daemon publishes over gRPC.
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>

#include "client/cpp/channel.h"
#include "client/cpp/lease.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/e2e/daemon_process.h"
#include "tests/e2e/shard_files.h"
#include "weightd/v1/loader.grpc.pb.h"

namespace weightd::testing {
namespace {

namespace fs = std::filesystem;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

struct SourceTensor {
  std::string dtype;
  uint64_t begin = 0, end = 0;
};

// Every tensor of every shard, from the safetensors headers.
std::map<std::string, SourceTensor> SourceTensors(const std::string& dir, uint64_t* data_start_of_first = nullptr,
                                                  const std::string& only = "") {
  std::map<std::string, SourceTensor> out;
  for (const std::string& f : Shards(dir)) {
    if (!only.empty() && f != only) continue;
    std::string bytes = ReadFile(f);
    uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    auto header = nlohmann::json::parse(bytes.substr(8, n));
    if (data_start_of_first) *data_start_of_first = 8 + n;
    for (auto& [name, t] : header.items()) {
      if (name == "__metadata__") continue;
      out[name] = SourceTensor{t["dtype"], t["data_offsets"][0], t["data_offsets"][1]};
    }
  }
  return out;
}

class MetricsE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    checkpoint_ = daemon_.model_root() + "/tiny";
    CommandResult gen = daemon_.GenerateTiny("tiny", {"--shards=3", "--dtype=mixed"});
    ASSERT_EQ(gen.exit_code, 0) << gen.err;
    daemon_.Start({"--host-devices=2"});
    stub_ = v1::Loader::NewStub(client::MakeChannel(daemon_.grpc_address()));
  }

  void ExpectOk(const CommandResult& result) { EXPECT_EQ(result.exit_code, 0) << result.out << result.err; }

  // A metric that may not exist yet reads as 0.
  double Count(const std::string& sample) const { return std::max(0.0, daemon_.Metric(sample)); }

  v1::Manifest Manifest(const std::string& model) {
    v1::GetManifestRequest request;
    request.set_model_id(model);
    v1::Manifest manifest;
    grpc::ClientContext context;
    grpc::Status status = stub_->GetManifest(&context, request, &manifest);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return manifest;
  }

  // Runs a LoadModel to its end; returns the final status.
  grpc::Status Load(const v1::LoadModelRequest& request) {
    grpc::ClientContext context;
    auto reader = stub_->LoadModel(&context, request);
    v1::LoadEvent event;
    while (reader->Read(&event)) {
    }
    return reader->Finish();
  }

  DaemonProcess daemon_;
  std::string checkpoint_;
  std::unique_ptr<v1::Loader::Stub> stub_;
};

// Allocation bytes of a manifest, by device.
std::map<uint32_t, uint64_t> AllocationBytes(const v1::Manifest& m) {
  std::map<uint32_t, uint64_t> out;
  for (const auto& rank : m.ranks()) {
    for (const auto& a : rank.allocations()) out[rank.device()] += a.size();
  }
  return out;
}

// The planner's arena: the end of the last tensor, rounded up to the host backend's
// granularity (the page size), computed here from the manifest's offsets.
uint64_t PlannedArena(const v1::RankManifest& rank) {
  uint64_t end = 0;
  for (const auto& t : rank.tensors()) end = std::max<uint64_t>(end, t.offset() + t.size());
  uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  return (end + page - 1) / page * page;
}

// Source bytes of the tensors the daemon quantized: FP8 in the manifest, not FP8 at the source.
uint64_t QuantizedSourceBytes(const v1::Manifest& m, const std::map<std::string, SourceTensor>& source) {
  uint64_t total = 0;
  for (const auto& t : m.ranks(0).tensors()) {
    auto it = source.find(t.name());
    if (t.dtype() == "F8_E4M3" && it != source.end() && it->second.dtype != "F8_E4M3") {
      total += it->second.end - it->second.begin;
    }
  }
  return total;
}

TEST_F(MetricsE2ETest, ExactValuesForLoadsOnTwoDevices) {
  const uint64_t file_bytes = ShardBytes(checkpoint_);
  ASSERT_GT(file_bytes, 0u);
  // The build's features (from CMake's answer at configure time), whichever backend runs.
  EXPECT_EQ(daemon_.Metric("weightd_build_info{cuda=\"" WEIGHTD_EXPECT_CUDA "\",nccl=\"" WEIGHTD_EXPECT_NCCL
                           "\",version=\"0.1.0\"}"),
            1)
      << daemon_.Metrics();
  nlohmann::json ready = daemon_.ReadyRecord();
  EXPECT_EQ(ready["cuda"], WEIGHTD_EXPECT_CUDA);
  EXPECT_EQ(ready["nccl"], WEIGHTD_EXPECT_NCCL);
  EXPECT_EQ(daemon_.Metric("weightd_host_pinned_memory_used_bytes"), 0);
  EXPECT_EQ(daemon_.Metric("weightd_host_pinned_memory_peak_bytes"), 0);
  EXPECT_EQ(daemon_.Metric("weightd_received_bytes_total{source=\"path\"}"), 0);
  EXPECT_EQ(daemon_.Metric("weightd_loads_total{result=\"ok\"}"), 0);
  EXPECT_EQ(daemon_.Metric("weightd_models{state=\"ready\"}"), 0);

  // Path and push count the same thing: every byte of every shard file.
  ExpectOk(daemon_.Ctl({"load", "a", "--path=tiny"}));
  EXPECT_EQ(daemon_.Metric("weightd_received_bytes_total{source=\"path\"}"), file_bytes);
  ExpectOk(daemon_.Ctl({"load", "b", "--push=" + checkpoint_}));
  EXPECT_EQ(daemon_.Metric("weightd_received_bytes_total{source=\"push\"}"), file_bytes);

  // A third copy on device 1.
  v1::LoadModelRequest on_one;
  on_one.set_model_id("c");
  on_one.mutable_source()->mutable_path()->set_path("tiny");
  on_one.mutable_placement()->add_devices(1);
  grpc::Status loaded = Load(on_one);
  ASSERT_TRUE(loaded.ok()) << loaded.error_message();
  EXPECT_EQ(daemon_.Metric("weightd_received_bytes_total{source=\"path\"}"), 2 * file_bytes);

  const auto source = SourceTensors(checkpoint_);
  uint64_t quantized = 0;
  std::map<uint32_t, uint64_t> device_used;
  for (const char* model : {"a", "b", "c"}) {
    v1::Manifest m = Manifest(model);
    ASSERT_EQ(m.ranks_size(), 1);
    const uint32_t device = m.ranks(0).device();
    EXPECT_EQ(device, std::string(model) == "c" ? 1u : 0u);
    const uint64_t arena = PlannedArena(m.ranks(0));
    auto allocations = AllocationBytes(m);
    ASSERT_EQ(allocations.size(), 1u);
    EXPECT_EQ(allocations[device], arena) << model;
    EXPECT_EQ(m.resident_bytes(), arena) << model;
    const std::string labels = "{device=\"" + std::to_string(device) + "\",model=\"" + model + "\"}";
    EXPECT_EQ(daemon_.Metric("weightd_model_resident_bytes" + labels), allocations[device]) << model;
    // Host backend: no staging ring on the device, so the load's peak is its arena.
    EXPECT_EQ(daemon_.Metric("weightd_load_device_memory_peak_bytes" + labels), arena) << model;
    device_used[device] += arena;
    uint64_t q = QuantizedSourceBytes(m, source);
    EXPECT_GT(q, 0u);
    quantized += q;
  }
  for (uint32_t d : {0u, 1u}) {
    const std::string dev = "{device=\"" + std::to_string(d) + "\"}";
    EXPECT_EQ(daemon_.Metric("weightd_device_memory_used_bytes" + dev), device_used[d]);
    EXPECT_EQ(daemon_.Metric("weightd_device_memory_peak_bytes" + dev), device_used[d]);
  }
  EXPECT_EQ(daemon_.Metric("weightd_quantized_bytes_total{scheme=\"per-tensor\"}"), quantized);
  EXPECT_EQ(daemon_.Metric("weightd_loads_total{result=\"ok\"}"), 3);
  EXPECT_EQ(daemon_.Metric("weightd_load_duration_seconds_count"), 3);
  EXPECT_EQ(daemon_.Metric("weightd_load_throughput_bytes_per_second_count"), 3);
  EXPECT_EQ(daemon_.Metric("weightd_models{state=\"ready\"}"), 3);
  EXPECT_EQ(daemon_.Metric("weightd_models{state=\"loading\"}"), 0);

  // scheme=none quantizes nothing: its counter exists and stays 0.
  ExpectOk(daemon_.Ctl({"load", "raw", "--path=tiny", "--scheme=none"}));
  EXPECT_EQ(daemon_.Metric("weightd_quantized_bytes_total{scheme=\"none\"}"), 0);
  EXPECT_EQ(daemon_.Metric("weightd_quantized_bytes_total{scheme=\"per-tensor\"}"), quantized);
  uint64_t raw = AllocationBytes(Manifest("raw"))[0];
  device_used[0] += raw;
  EXPECT_EQ(daemon_.Metric("weightd_device_memory_used_bytes{device=\"0\"}"), device_used[0]);

  // A lease is counted while it is held.
  {
    auto lease = client::Lease::Attach(daemon_.handle_socket(), "a", 0);
    ASSERT_TRUE(lease.ok()) << lease.status();
    EXPECT_EQ(daemon_.Metric("weightd_active_leases"), 1);
  }
  double leases = -1;
  for (int i = 0; i < 100 && leases != 0; ++i) {
    leases = daemon_.Metric("weightd_active_leases");
    if (leases != 0) usleep(20000);
  }
  EXPECT_EQ(leases, 0);

  // Unloading frees the device bytes and removes the model's series; the peak stays.
  const double peak0 = daemon_.Metric("weightd_device_memory_peak_bytes{device=\"0\"}");
  ExpectOk(daemon_.Ctl({"unload", "a"}));
  uint64_t a_bytes = device_used[0] - raw - AllocationBytes(Manifest("b"))[0];
  EXPECT_EQ(daemon_.Metric("weightd_device_memory_used_bytes{device=\"0\"}"), device_used[0] - a_bytes);
  EXPECT_EQ(daemon_.Metric("weightd_device_memory_peak_bytes{device=\"0\"}"), peak0);
  EXPECT_EQ(daemon_.Metric("weightd_model_resident_bytes{device=\"0\",model=\"a\"}"), -1);
  EXPECT_EQ(daemon_.Metric("weightd_load_device_memory_peak_bytes{device=\"0\",model=\"a\"}"), -1);
  EXPECT_GT(daemon_.Metric("weightd_model_resident_bytes{device=\"0\",model=\"b\"}"), 0);
  EXPECT_EQ(daemon_.Metric("weightd_models{state=\"ready\"}"), 3);
}

// A copy of the checkpoint whose first quantized tensor starts with a NaN: the load fails
// after its arena was allocated, in the data phase.
std::string CorruptCopy(const std::string& checkpoint, const std::string& dir) {
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(checkpoint)) fs::copy_file(e.path(), dir + "/" + e.path().filename().string());
  const std::string shard = Shards(dir)[0];
  uint64_t data_start = 0;
  auto tensors = SourceTensors(dir, &data_start, shard);
  for (const auto& [name, t] : tensors) {
    if (name.find("proj.weight") == std::string::npos || t.dtype == "F8_E4M3") continue;
    std::fstream f(shard, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(static_cast<std::streamoff>(data_start + t.begin));
    const char nan[4] = {'\xff', '\xff', '\xff', '\xff'};
    f.write(nan, 4);
    return name;
  }
  return "";
}

TEST_F(MetricsE2ETest, EveryOutcomeIsCountedAndFailuresLeaveUsedBytesWhereTheyWere) {
  ExpectOk(daemon_.Ctl({"load", "good", "--path=tiny"}));
  const double used = daemon_.Metric("weightd_device_memory_used_bytes{device=\"0\"}");
  ASSERT_GT(used, 0);

  // Fails in the data phase, after its arena existed.
  std::string bad_tensor = CorruptCopy(checkpoint_, daemon_.model_root() + "/bad");
  ASSERT_FALSE(bad_tensor.empty());
  CommandResult bad = daemon_.Ctl({"load", "bad", "--path=bad"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("INVALID_ARGUMENT"), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find(bad_tensor), std::string::npos) << bad.err;
  EXPECT_EQ(daemon_.Metric("weightd_errors_total{code=\"INVALID_ARGUMENT\"}"), 1);
  EXPECT_EQ(daemon_.Metric("weightd_loads_total{result=\"error\"}"), 1);
  EXPECT_EQ(daemon_.Metric("weightd_device_memory_used_bytes{device=\"0\"}"), used);
  EXPECT_GT(daemon_.Metric("weightd_device_memory_peak_bytes{device=\"0\"}"), used);
  EXPECT_EQ(daemon_.Metric("weightd_model_resident_bytes{device=\"0\",model=\"bad\"}"), -1);
  EXPECT_EQ(daemon_.Metric("weightd_models{state=\"failed\"}"), 1);

  // Refused before starting: no such checkpoint, and a different spec under a resident id.
  CommandResult missing = daemon_.Ctl({"load", "m", "--path=nothing-here"});
  EXPECT_EQ(missing.exit_code, 1);
  CommandResult clash = daemon_.Ctl({"load", "good", "--path=tiny", "--scheme=none"});
  EXPECT_EQ(clash.exit_code, 1);
  EXPECT_EQ(daemon_.Metric("weightd_errors_total{code=\"NOT_FOUND\"}"), 1);
  EXPECT_EQ(daemon_.Metric("weightd_errors_total{code=\"ALREADY_EXISTS\"}"), 1);
  EXPECT_EQ(daemon_.Metric("weightd_loads_total{result=\"refused\"}"), 2);
  // Attaching to the resident model is not a new load.
  ExpectOk(daemon_.Ctl({"load", "good", "--path=tiny"}));
  EXPECT_EQ(daemon_.Metric("weightd_loads_total{result=\"ok\"}"), 1);

  // Aborted by a forced unload while it waits for pushed shards.
  v1::LoadModelRequest waiting;
  waiting.set_model_id("pending");
  waiting.mutable_source()->mutable_push()->add_shard_files("model.safetensors");
  grpc::ClientContext context;
  auto reader = stub_->LoadModel(&context, waiting);
  v1::LoadEvent accepted;
  ASSERT_TRUE(reader->Read(&accepted));
  EXPECT_EQ(daemon_.Metric("weightd_models{state=\"loading\"}"), 1);
  ExpectOk(daemon_.Ctl({"unload", "pending", "--force"}));
  while (reader->Read(&accepted)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::ABORTED);
  EXPECT_EQ(daemon_.Metric("weightd_loads_total{result=\"aborted\"}"), 1);
  EXPECT_EQ(daemon_.Metric("weightd_errors_total{code=\"ABORTED\"}"), 1);
  EXPECT_EQ(daemon_.Metric("weightd_models{state=\"loading\"}"), 0);

  // Every outcome once: the error counters add up to the loads that did not succeed.
  double not_ok = 0;
  for (const char* r : {"error", "refused", "aborted"}) not_ok += Count(std::string("weightd_loads_total{result=\"") + r + "\"}");
  double errors = 0;
  for (const char* c : {"INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", "ABORTED"}) {
    errors += Count(std::string("weightd_errors_total{code=\"") + c + "\"}");
  }
  EXPECT_EQ(not_ok, 4);  // 1 error, 2 refused, 1 aborted
  EXPECT_EQ(errors, not_ok);
  EXPECT_EQ(daemon_.Metric("weightd_device_memory_used_bytes{device=\"0\"}"), used);

  // The structured log has
  // the abort as one JSON object with its source and scheme.
  EXPECT_EQ(daemon_.Stop(), 0);
  bool found = false;
  for (size_t pos = 0, end; (end = daemon_.log().find('\n', pos)) != std::string::npos; pos = end + 1) {
    auto j = nlohmann::json::parse(daemon_.log().substr(pos, end - pos), nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << daemon_.log().substr(pos, end - pos);
    if (j.value("event", "") != "load_finished" || j.value("model", "") != "pending") continue;
    found = true;
    EXPECT_EQ(j.value("result", ""), "aborted");
    EXPECT_EQ(j.value("code", ""), "ABORTED");
    EXPECT_EQ(j.value("source", ""), "push");
    EXPECT_EQ(j.value("scheme", ""), "per-tensor");
    EXPECT_TRUE(j["seconds"].is_number()) << j;
  }
  EXPECT_TRUE(found) << daemon_.log();
}

}  // namespace
}  // namespace weightd::testing
