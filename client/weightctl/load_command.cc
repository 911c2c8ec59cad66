// weightctl load / push.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/byte_size.h"
#include "base/duration_text.h"
#include "client/cpp/channel.h"
#include "client/weightctl/cli.h"
#include "client/weightctl/progress_printer.h"
#include "client/weightctl/shard_push.h"
#include "client/weightctl/tp_rules_file.h"
#include "grpcpp/client_context.h"
#include "weightd/v1/loader.grpc.pb.h"

namespace weightd::ctl {
namespace {
namespace fs = std::filesystem;

struct LocalShards {
  std::vector<fs::path> files;
  std::string config_json;
};

absl::StatusOr<LocalShards> FindLocalShards(const std::string& path) {
  LocalShards shards;
  std::error_code ec;
  fs::path dir = path;
  if (fs::is_directory(path, ec)) {
    for (const auto& entry : fs::directory_iterator(path, ec)) {
      if (absl::EndsWith(entry.path().filename().string(), ".safetensors")) shards.files.push_back(entry.path());
    }
    std::sort(shards.files.begin(), shards.files.end());
    if (shards.files.empty()) return absl::NotFoundError(absl::StrCat("no .safetensors file in ", path));
  } else if (fs::is_regular_file(path, ec)) {
    shards.files.push_back(path);
    dir = fs::path(path).parent_path();
  } else {
    return absl::NotFoundError(absl::StrCat(path, " does not exist"));
  }
  std::ifstream config(dir / "config.json", std::ios::binary);
  if (config) {
    std::stringstream text;
    text << config.rdbuf();
    shards.config_json = text.str();
  }
  return shards;
}

absl::StatusOr<v1::LoadModelRequest> BuildRequest(const CliOptions& options, const std::string& model,
                                                  const LocalShards* push) {
  v1::LoadModelRequest request;
  request.set_model_id(model);
  if (push != nullptr) {
    v1::PushSource* source = request.mutable_source()->mutable_push();
    for (const fs::path& file : push->files) source->add_shard_files(file.filename().string());
    source->set_config_json(push->config_json);
  } else if (!options.peer.empty()) {
    v1::PeerSource* source = request.mutable_source()->mutable_peer();
    source->set_address(options.peer[0]);
    for (size_t i = 1; i < options.peer.size(); ++i) source->add_fallback_addresses(options.peer[i]);
    source->set_model_id(options.peer_model);
    source->set_streams(options.peer_streams);
  } else {
    request.mutable_source()->mutable_path()->set_path(options.path);
    request.set_prefer_peers(options.prefer_peers);
  }
  auto scheme = ParseScheme(options.scheme);
  if (!scheme.ok()) return scheme.status();
  v1::Quantization* quantization = request.mutable_quantization();
  quantization->set_scheme(*scheme);
  for (const std::string& pattern : options.ignore) quantization->add_ignore(pattern);
  auto nonfinite = ParseNonFinite(options.nonfinite);
  if (!nonfinite.ok()) return nonfinite.status();
  quantization->set_nonfinite(*nonfinite);
  auto scope = ParseScaleScope(options.scale_scope);
  if (!scope.ok()) return scope.status();
  quantization->set_scale_scope(*scope);
  request.mutable_placement()->set_tp_size(options.tp_size);
  auto layout = ParseLayout(options.layout);
  if (!layout.ok()) return layout.status();
  request.mutable_placement()->set_layout(*layout);
  request.mutable_placement()->set_writable(options.writable);
  if (!options.tp_rules.empty()) {
    auto rules = ReadShardingRules(options.tp_rules);
    if (!rules.ok()) return rules.status();
    for (v1::ShardingRule& rule : *rules) *request.mutable_placement()->add_sharding_rules() = std::move(rule);
  }
  return request;
}

// Pushes every shard in its own thread; the first failure wins.
absl::Status PushAll(const CliOptions& options, const std::string& model, const LocalShards& shards) {
  absl::StatusOr<client::PushTransport> transport = ParsePushTransport(options.push_transport);
  if (!transport.ok()) return transport.status();
  std::mutex mu;
  absl::Status first_error;
  std::vector<std::thread> threads;
  for (const fs::path& file : shards.files) {
    threads.emplace_back([&, file] {
      auto summary =
          PushShardFile(options.address, options.tls, model, file.string(), file.filename().string(), *transport);
      std::lock_guard<std::mutex> lock(mu);
      if (!summary.ok() && first_error.ok()) first_error = summary.status();
    });
  }
  for (std::thread& thread : threads) thread.join();
  return first_error;
}

void PrintLoaded(const v1::Manifest& manifest, double seconds) {
  std::printf("loaded %s: %s resident from %s of tensors in %s\n", manifest.model_id().c_str(),
              FormatByteSize(manifest.resident_bytes()).c_str(), FormatByteSize(manifest.source_bytes()).c_str(),
              FormatDuration(seconds).c_str());
}

}  // namespace

int RunLoad(const CliOptions& options, const Args& args) {
  const int sources = !options.path.empty() + !options.push.empty() + !options.peer.empty();
  if (args.size() != 1 || sources != 1) {
    return Usage(
        "weightctl load MODEL --path DIR [--prefer-peers] | --push DIR_OR_FILE | --peer ADDR[,FALLBACK...] "
        "[--peer-model ID] [--peer-streams N] [--scheme S] [--ignore ...] [--tp N] "
        "[--scale-scope tensor|shard] [--tp-rules FILE] [--layout checkpoint|vllm] [--push-transport auto|grpc]");
  }
  const std::string& model = args[0];
  std::optional<LocalShards> shards;
  if (!options.push.empty()) {
    auto found = FindLocalShards(options.push);
    if (!found.ok()) return ReportError(found.status());
    // Before the load starts: a bad value must not leave a load waiting for shards.
    auto transport = ParsePushTransport(options.push_transport);
    if (!transport.ok()) return ReportError(transport.status());
    shards = std::move(*found);
  }
  auto request = BuildRequest(options, model, shards ? &*shards : nullptr);
  if (!request.ok()) return ReportError(request.status());

  auto channel = client::MakeChannel(options.address, options.tls);
  if (!channel.ok()) return ReportError(channel.status());
  auto stub = v1::Loader::NewStub(*channel);
  grpc::ClientContext context;
  auto started = std::chrono::steady_clock::now();
  std::unique_ptr<grpc::ClientReader<v1::LoadEvent>> reader = stub->LoadModel(&context, *request);
  ProgressPrinter progress(options.progress);
  v1::LoadEvent event;
  std::thread pusher;
  absl::Status push_status;
  v1::Manifest manifest;
  while (reader->Read(&event)) {
    // The first event means the daemon expects the shards: push them now.
    if (shards && !pusher.joinable()) {
      // A failed push fails the load on the daemon's side, which ends this stream
      // with the cause; the stream's status is the one to report.
      pusher = std::thread([&] { push_status = PushAll(options, model, *shards); });
    }
    progress.Update(event);
    if (event.has_manifest()) manifest = event.manifest();
  }
  absl::Status status = client::FromGrpc(reader->Finish());
  if (pusher.joinable()) pusher.join();
  progress.Finish();
  if (!status.ok()) return ReportError(status);
  if (!push_status.ok()) return ReportError(push_status);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  PrintLoaded(manifest, seconds);
  return 0;
}

int RunPush(const CliOptions& options, const Args& args) {
  if (args.size() < 2) return Usage("weightctl push MODEL FILE.safetensors...");
  LocalShards shards;
  for (size_t i = 1; i < args.size(); ++i) shards.files.emplace_back(args[i]);
  absl::Status status = PushAll(options, args[0], shards);
  if (!status.ok()) return ReportError(status);
  std::printf("pushed %zu shard(s) into %s\n", shards.files.size(), args[0].c_str());
  return 0;
}

}  // namespace weightd::ctl
