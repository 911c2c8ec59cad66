// weightd-push-gen: loads a synthetic Llama checkpoint into a daemon by pushing its
// shards from memory, generated on the fly (the bytes weightd-gen writes with the
// same flags), one PushShards stream per shard, all in parallel. No disk needed, so
// a 141 GB checkpoint can be pushed from a machine with a small disk. Prints one
// JSON line: bytes pushed, seconds from LoadModel to READY, GB/s, resident bytes.
//
//   weightd-push-gen --address=unix:/run/weightd/weightd.sock --model=llama70
//       --preset=70b --streams=8 --fill=fast
//   weightd-push-gen --preset=8b --streams=4 --fill=fast --generate-only   (generator speed)
//   weightd-push-gen --preset=small --streams=1 --fill=fast --scheme=none  (no quantization)

#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "base/process_cpu.h"
#include "base/status_macros.h"
#include "bench/gen/gen_flags.h"
#include "bench/gen/llama_config.h"
#include "bench/gen/shard_bytes.h"
#include "client/cpp/channel.h"
#include "client/cpp/client.h"
#include "client/cpp/shard_stream.h"
#include "weightd/v1/loader.grpc.pb.h"

ABSL_FLAG(std::string, address, "unix:/run/weightd/weightd.sock", "daemon gRPC address, e.g. --address=unix:/tmp/w.sock");
ABSL_FLAG(std::string, model, "synthetic", "model id to load, e.g. --model=llama70");
ABSL_FLAG(int, streams, 0, "parallel push streams, one shard each (0: --shards), e.g. --streams=8");
ABSL_FLAG(uint32_t, tp, 1, "tensor-parallel size of the load (GPUs 0..tp-1), e.g. --tp=2");
ABSL_FLAG(std::string, scheme, "per_tensor",
          "quantization scheme: per_tensor, per_channel, block or none (gRPC cost alone), e.g. --scheme=none");
ABSL_FLAG(uint32_t, chunk_mib, 4, "bytes per ShardChunk message in MiB (weightctl push sends 4), e.g. --chunk-mib=8");
ABSL_FLAG(std::string, transport, "auto",
          "auto: the daemon's raw push connection on a Unix address (gRPC where it takes none), gRPC on TCP; "
          "grpc: gRPC everywhere, e.g. --transport=grpc");
ABSL_FLAG(bool, generate_only, false, "generate the shard bytes and discard them (no daemon), e.g. --generate-only");

namespace weightd::bench {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Raw messages (client/cpp/shard_stream.h): the generator writes each message's
// data straight into the buffer that is sent (raw push on a Unix address, or gRPC).
absl::Status PushShard(const std::string& address, const std::string& model, const GenOptions& options,
                       const CheckpointPlan& plan, int shard, client::PushTransport transport) {
  ShardByteSource source(options, plan, shard);
  WEIGHTD_ASSIGN_OR_RETURN(std::unique_ptr<client::ShardStream> stream,
                           client::OpenShardStream(address, client::TlsOptions{}, model, plan.files[shard],
                                                   source.size(), transport));
  const size_t chunk_bytes = size_t{absl::GetFlag(FLAGS_chunk_mib)} << 20;
  while (stream->Send(chunk_bytes, [&](uint8_t* buffer, size_t capacity) { return source.Read({buffer, capacity}); })) {
  }
  return stream->Finish().status();
}

// Runs fn(shard) for every shard, one thread each; the first failure wins.
template <typename Fn>
absl::Status ForEachShard(const CheckpointPlan& plan, Fn fn) {
  std::mutex mu;
  absl::Status first;
  std::vector<std::thread> threads;
  for (int s = 0; s < static_cast<int>(plan.files.size()); ++s) {
    threads.emplace_back([&, s] {
      absl::Status status = fn(s);
      std::lock_guard<std::mutex> lock(mu);
      if (!status.ok() && first.ok()) first = status;
    });
  }
  for (std::thread& t : threads) t.join();
  return first;
}

uint64_t FileBytes(const GenOptions& options, const CheckpointPlan& plan) {
  uint64_t total = 0;
  for (int s = 0; s < static_cast<int>(plan.files.size()); ++s) total += ShardByteSource(options, plan, s).size();
  return total;
}

absl::Status Run() {
  WEIGHTD_ASSIGN_OR_RETURN(GenOptions options, GenOptionsFromFlags());
  v1::Scheme scheme;
  if (!v1::Scheme_Parse("SCHEME_" + absl::AsciiStrToUpper(absl::GetFlag(FLAGS_scheme)), &scheme) ||
      scheme == v1::SCHEME_UNSPECIFIED) {
    return absl::InvalidArgumentError(absl::StrCat("--scheme: unknown scheme '", absl::GetFlag(FLAGS_scheme), "'"));
  }
  if (absl::GetFlag(FLAGS_chunk_mib) == 0 || absl::GetFlag(FLAGS_chunk_mib) > 60) {
    return absl::InvalidArgumentError("--chunk-mib: 1 to 60 (the daemon takes messages up to 64 MiB)");
  }
  if (absl::GetFlag(FLAGS_streams) > 0) options.shards = absl::GetFlag(FLAGS_streams);
  options.out_dir.assign(1, '-');  // nothing is written
  WEIGHTD_ASSIGN_OR_RETURN(const CheckpointPlan plan, PlanCheckpoint(options));
  const uint64_t bytes = FileBytes(options, plan);
  const std::string model = absl::GetFlag(FLAGS_model);
  const std::string address = absl::GetFlag(FLAGS_address);
  const std::string transport_name = absl::GetFlag(FLAGS_transport);  // read once: the push threads share it
  if (transport_name != "auto" && transport_name != "grpc") {
    return absl::InvalidArgumentError("--transport: auto or grpc, not '" + transport_name + "'");
  }
  const client::PushTransport transport =
      transport_name == "grpc" ? client::PushTransport::kGrpc : client::PushTransport::kAuto;
  const auto start = std::chrono::steady_clock::now();
  const double cpu_start = ProcessCpuSeconds();
  uint64_t resident = 0;
  if (absl::GetFlag(FLAGS_generate_only)) {
    WEIGHTD_RETURN_IF_ERROR(ForEachShard(plan, [&](int s) {
      ShardByteSource source(options, plan, s);
      std::vector<uint8_t> buffer(size_t{absl::GetFlag(FLAGS_chunk_mib)} << 20);
      while (source.Read(buffer) > 0) {
      }
      return absl::OkStatus();
    }));
  } else {
    v1::LoadModelRequest request;
    request.set_model_id(model);
    v1::PushSource* push = request.mutable_source()->mutable_push();
    for (const std::string& file : plan.files) push->add_shard_files(file);
    push->set_config_json(LlamaConfigJson(options.config, options.dtype));
    request.mutable_quantization()->set_scheme(scheme);
    request.mutable_placement()->set_tp_size(absl::GetFlag(FLAGS_tp));
    client::Client client({.address = address});
    std::thread pusher;
    absl::Status push_status;
    // The first event means the daemon expects the shards: push them now.
    auto manifest = client.Load(request, [&](const v1::LoadEvent&) {
      if (!pusher.joinable()) {
        pusher = std::thread([&] {
          push_status =
              ForEachShard(plan, [&](int s) { return PushShard(address, model, options, plan, s, transport); });
        });
      }
    });
    if (pusher.joinable()) pusher.join();
    if (!manifest.ok()) return manifest.status();
    WEIGHTD_RETURN_IF_ERROR(push_status);
    resident = manifest->resident_bytes();
  }
  const double seconds = SecondsSince(start);
  const double cpu_seconds = ProcessCpuSeconds() - cpu_start;
  std::printf(
      "{\"tool\":\"weightd-push-gen\",\"model\":\"%s\",\"preset\":\"%s\",\"layers\":%lld,\"streams\":%zu,"
      "\"generate_only\":%s,\"bytes\":%llu,\"tensor_bytes\":%llu,\"seconds\":%.4f,\"gbps\":%.3f,"
      "\"resident_bytes\":%llu,\"scheme\":\"%s\",\"chunk_mib\":%u,\"cpu_seconds\":%.2f}\n",
      model.c_str(), options.config.name.c_str(), static_cast<long long>(options.config.num_layers),
      plan.files.size(), absl::GetFlag(FLAGS_generate_only) ? "true" : "false",
      static_cast<unsigned long long>(bytes), static_cast<unsigned long long>(plan.total_bytes), seconds,
      static_cast<double>(bytes) / seconds / 1e9, static_cast<unsigned long long>(resident),
      absl::GetFlag(FLAGS_scheme).c_str(), absl::GetFlag(FLAGS_chunk_mib), cpu_seconds);
  return absl::OkStatus();
}

}  // namespace
}  // namespace weightd::bench

int main(int argc, char** argv) { return weightd::bench::GenToolMain("weightd-push-gen", argc, argv, weightd::bench::Run); }
