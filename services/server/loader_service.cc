#include "services/server/loader_service.h"

#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "base/log.h"
#include "services/load/spec_validation.h"
#include "services/peer/peer_description.h"
#include "services/peer/peer_load.h"
#include "services/server/grpc_status.h"
#include "services/server/load_model_reactor.h"
#include "services/server/push_framing.h"
#include "services/server/push_shards_reactor.h"
#include "services/sources/checkpoint_dir.h"
#include "services/sources/path_source.h"

namespace weightd {
namespace {

// "ipv4:10.0.0.7:51234" -> "10.0.0.7": a peer's host, without its ephemeral port (metrics labels).
std::string PeerHost(const std::string& peer) {
  absl::string_view p = peer;
  absl::ConsumePrefix(&p, "ipv4:");
  absl::ConsumePrefix(&p, "ipv6:");
  if (absl::StartsWith(p, "unix:")) return "unix";
  const size_t colon = p.rfind(':');
  return std::string(colon == absl::string_view::npos ? p : p.substr(0, colon));
}

grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* context, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace

grpc::ServerWriteReactor<v1::LoadEvent>* LoaderService::LoadModel(grpc::CallbackServerContext* context,
                                                                  const v1::LoadModelRequest* request) {
  auto* reactor = new LoadModelReactor(*deps_.registry, request->model_id());
  absl::Status valid = ValidateLoadSpec(*request);
  if (!valid.ok()) {
    deps_.registry->ReportRefused(*request, valid);
    reactor->Reject(valid);
    return reactor;
  }
  std::function<void(std::shared_ptr<LoadJob>)> start = [this](std::shared_ptr<LoadJob> job) {
    if (deps_.push_watchdog != nullptr) deps_.push_watchdog->Watch(job);
  };
  if (request->source().has_peer()) {
    const v1::PeerSource& peer = request->source().peer();
    std::vector<std::string> addresses = {peer.address()};
    addresses.insert(addresses.end(), peer.fallback_addresses().begin(), peer.fallback_addresses().end());
    std::string peer_model = peer.model_id().empty() ? request->model_id() : peer.model_id();
    start = [this, addresses, peer_model, streams = peer.streams()](std::shared_ptr<LoadJob> job) {
      if (deps_.push_watchdog != nullptr) deps_.push_watchdog->Watch(job);
      deps_.loaders->Post([this, job, addresses, peer_model, streams] {
        PullFromPeers(job, addresses, peer_model, streams, nullptr, "");
      });
    };
  }
  if (request->source().has_path()) {
    auto files = FindCheckpoint(deps_.model_root, request->source().path().path());
    if (!files.ok()) {
      deps_.registry->ReportRefused(*request, files.status());
      reactor->Reject(files.status());
      return reactor;
    }
    start = [this, files = *files](std::shared_ptr<LoadJob> job) {
      deps_.loaders->Post([this, job, files] {
        if (job->spec().prefer_peers() && deps_.peers != nullptr) {
          // Headers only from the files; the data from a peer that holds the same checkpoint.
          auto headers = ReadCheckpointHeaders(files, deps_.parse_limits);
          if (headers.ok()) {
            v1::FindPeerModelRequest find;
            find.set_model_id(job->model_id());
            find.set_source_digest(SourceDigest(*headers, files.config_json));
            *find.mutable_quantization() = job->spec().quantization();
            std::vector<std::string> holders = deps_.peers->Holders(find);
            LogEvent(LogLevel::kInfo, "peers_asked",
                     {{"model", job->model_id()}, {"holders", holders.size()},
                      {"from", holders.empty() ? std::string("files") : holders[0]}});
            if (!holders.empty()) {
              PullFromPeers(job, holders, job->model_id(), 0, &*headers, files.config_json);
              return;
            }
          }
        }
        SourceHooks hooks = deps_.path_hooks;
        std::string id = job->model_id();
        Registry* registry = deps_.registry;
        auto progress = hooks.progress;
        hooks.progress = [registry, id, progress] {
          registry->MaybeReportProgress(id);
          if (progress) progress();
        };
        PathSourceOptions options = deps_.path_read;
        options.limits = deps_.parse_limits;
        RunPathLoad(job, files, hooks, options);
      });
    };
  }
  absl::Status started = deps_.registry->LoadOrAttach(*request, reactor->watcher(), start);
  if (!started.ok()) {
    deps_.registry->ReportRefused(*request, started);
    reactor->Reject(started);
  }
  return reactor;
}

void LoaderService::PullFromPeers(std::shared_ptr<LoadJob> job, std::vector<std::string> addresses,
                                  std::string peer_model_id, uint32_t streams,
                                  const std::vector<ShardInput>* expected, std::string expected_config) {
  PeerLoadOptions options;
  options.addresses = std::move(addresses);
  options.peer_model_id = std::move(peer_model_id);
  options.streams = streams == 0 ? 4 : streams;
  options.channels = deps_.peer_channels;
  options.limits = deps_.parse_limits;
  options.expected_shards = expected;
  options.expected_config_json = std::move(expected_config);
  Registry* registry = deps_.registry;
  const std::string id = job->model_id();
  const LoadJob* key = job.get();
  options.relay = [registry, id, key](std::shared_ptr<ServableModel> servable) {
    registry->SetRelay(id, key, std::move(servable));
  };
  options.progress = [registry, id] { registry->MaybeReportProgress(id); };
  options.received = deps_.peer_received;
  RunPeerLoad(std::move(job), options);
}

grpc::ServerReadReactor<grpc::ByteBuffer>* LoaderService::PushShards(grpc::CallbackServerContext* context,
                                                                     grpc::ByteBuffer* summary) {
  auto named = [context](const char* key) {
    auto it = context->client_metadata().find(key);
    return it == context->client_metadata().end() ? std::string() : std::string(it->second.data(), it->second.size());
  };
  auto* reactor = new GrpcPushShardsReactor(*deps_.registry, *deps_.work, deps_.placement, deps_.host_budget,
                                            deps_.push_hooks, deps_.parse_limits, deps_.push_pinning, summary,
                                            named(kPushModelIdKey), named(kPushShardFileKey));
  if (deps_.push_silence_timer != nullptr) reactor->CutIfSilent(*deps_.push_silence_timer, deps_.push_first_message_timeout);
  return reactor;
}

void LoaderService::StartRawPush(UniqueFd fd) {
  auto* reactor = new RawPushShardsReactor(*deps_.registry, *deps_.work, deps_.placement, deps_.host_budget,
                                           deps_.push_hooks, deps_.parse_limits, deps_.push_pinning,
                                           /*response=*/nullptr);
  reactor->Start(std::move(fd), deps_.max_message_bytes, deps_.push_first_message_timeout, *deps_.raw_push_calls);
}

grpc::ServerUnaryReactor* LoaderService::GetManifest(grpc::CallbackServerContext* context,
                                                     const v1::GetManifestRequest* request,
                                                     v1::Manifest* response) {
  auto manifest = deps_.registry->GetManifest(request->model_id());
  if (manifest.ok()) *response = std::move(*manifest);
  return Answer(context, manifest.status());
}

grpc::ServerUnaryReactor* LoaderService::ListModels(grpc::CallbackServerContext* context,
                                                    const v1::ListModelsRequest* request,
                                                    v1::ListModelsResponse* response) {
  for (v1::ModelInfo& info : deps_.registry->List()) *response->add_models() = std::move(info);
  return Answer(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* LoaderService::UnloadModel(grpc::CallbackServerContext* context,
                                                     const v1::UnloadModelRequest* request,
                                                     v1::UnloadModelResponse* response) {
  auto freed = deps_.registry->Unload(request->model_id(), request->force());
  if (freed.ok()) response->set_freed_bytes(*freed);
  return Answer(context, freed.status());
}

grpc::ServerUnaryReactor* LoaderService::GetStatus(grpc::CallbackServerContext* context,
                                                   const v1::GetStatusRequest* request,
                                                   v1::StatusResponse* response) {
  response->set_version(deps_.version);
  for (int d = 0; d < deps_.accounting->device_count(); ++d) {
    DeviceUsage usage = deps_.accounting->usage(d);
    v1::DeviceStatus* s = response->add_devices();
    s->set_index(static_cast<uint32_t>(d));
    s->set_kind(deps_.backend->kind());
    s->set_capacity_bytes(usage.limit);
    s->set_used_bytes(usage.used);
    s->set_peak_bytes(usage.peak);
  }
  for (v1::ModelInfo& info : deps_.registry->List()) *response->add_models() = std::move(info);
  return Answer(context, absl::OkStatus());
}

grpc::ServerWriteReactor<v1::PeerMessage>* LoaderService::ServePeer(grpc::CallbackServerContext* context,
                                                                    const v1::PeerServeRequest* request) {
  Registry* registry = deps_.registry;
  return new PeerServeReactor([registry, id = request->model_id()] { return registry->Servable(id); }, *request,
                              PeerHost(context->peer()), deps_.peer_serving);
}

grpc::ServerUnaryReactor* LoaderService::FindPeerModel(grpc::CallbackServerContext* context,
                                                       const v1::FindPeerModelRequest* request,
                                                       v1::FindPeerModelResponse* response) {
  *response = deps_.registry->FindForPeer(*request);
  response->set_instance(deps_.instance);
  return Answer(context, absl::OkStatus());
}

}  // namespace weightd
