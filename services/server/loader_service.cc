#include "services/server/loader_service.h"

#include "services/load/spec_validation.h"
#include "services/server/grpc_status.h"
#include "services/server/load_model_reactor.h"
#include "services/server/push_framing.h"
#include "services/server/push_shards_reactor.h"
#include "services/sources/checkpoint_dir.h"
#include "services/sources/path_source.h"

namespace weightd {
namespace {

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
  if (request->source().has_path()) {
    auto files = FindCheckpoint(deps_.model_root, request->source().path().path());
    if (!files.ok()) {
      deps_.registry->ReportRefused(*request, files.status());
      reactor->Reject(files.status());
      return reactor;
    }
    start = [this, files = *files](std::shared_ptr<LoadJob> job) {
      deps_.loaders->Post([this, job, files] {
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

grpc::ServerReadReactor<grpc::ByteBuffer>* LoaderService::PushShards(grpc::CallbackServerContext* context,
                                                                     grpc::ByteBuffer* summary) {
  auto named = [context](const char* key) {
    auto it = context->client_metadata().find(key);
    return it == context->client_metadata().end() ? std::string() : std::string(it->second.data(), it->second.size());
  };
  return new PushShardsReactor(*deps_.registry, *deps_.work, deps_.placement, deps_.host_budget, deps_.push_hooks, deps_.parse_limits, summary,
                               named(kPushModelIdKey), named(kPushShardFileKey));
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

}  // namespace weightd
