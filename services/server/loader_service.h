// The weightd.v1.Loader service on gRPC's callback API: streaming RPCs get
// their own reactors; the unary ones answer from the registry at once.
// Thread-safe.
#pragma once

#include <string>

#include "services/deadline_timer.h"
#include "services/device/accounting.h"
#include "services/device/device_backend.h"
#include "services/executor.h"
#include "services/load/push_pinning.h"
#include "services/load/stall_watchdog.h"
#include "services/peer/peer_channels.h"
#include "services/peer/peer_directory.h"
#include "services/peer/peer_serve_reactor.h"
#include "base/unique_fd.h"
#include "services/safetensors/header.h"
#include "services/server/raw_push_call.h"
#include "services/registry/registry.h"
#include "services/sources/path_source.h"
#include "services/sources/source_hooks.h"
#include "weightd/v1/loader.grpc.pb.h"

namespace weightd {

struct LoaderServiceDeps {
  Registry* registry;
  Executor* work;       // parsing pushed bytes, gathering tensors
  Executor* placement;  // quantizing and copying gathered pushed tensors (never waits on `work`)
  HostBudget* host_budget = nullptr;  // --host-memory-limit for pushed bytes; null: no limit
  Executor* loaders;  // one task per path load
  DeviceBackend* backend;
  DeviceAccounting* accounting;
  SourceHooks push_hooks;
  SourceHooks path_hooks;
  std::string model_root;
  PathSourceOptions path_read;
  std::string version;
  safetensors::ParseLimits parse_limits;
  PushPinning* push_pinning = nullptr;  // --pin-pushed-tensors (ShardWriter::PinGatheredTensors); none: never
  RawPushCalls* raw_push_calls = nullptr;  // the live raw push connections (StartRawPush)
  // A push stream that receives nothing this long from its start is answered DEADLINE_EXCEEDED:
  // a raw connection before its first frame is whole (RawPushCall::Start), a gRPC
  // PushShards call before its first message or its end (PushShardsReactor::CutIfSilent,
  // on `push_silence_timer`; none: never).
  std::chrono::milliseconds push_first_message_timeout{std::chrono::minutes(5)};
  DeadlineTimer* push_silence_timer = nullptr;
  uint32_t max_message_bytes = 64 << 20;   // the gRPC server's, and a raw push frame's, limit
  StallWatchdog* push_watchdog = nullptr;  // watches every push and peer load; may be null
  // Peers (docs/cluster.md).
  std::shared_ptr<const PeerChannels> peer_channels;
  const PeerDirectory* peers = nullptr;  // --peers; null: none
  PeerServing peer_serving;
  std::string instance;  // this daemon's random id
  std::function<void(const std::string& peer, uint64_t bytes)> peer_received;  // may be empty
};

// PushShards is registered raw (ByteBuffer in, ByteBuffer out) so that pushed
// bytes are read in place (push_message.h); its wire format is ShardChunk's.
class LoaderService final : public v1::Loader::WithRawCallbackMethod_PushShards<v1::Loader::CallbackService> {
 public:
  explicit LoaderService(LoaderServiceDeps deps) : deps_(std::move(deps)) {}
  // The typed PushShards stays declared (never called: the raw one is registered).
  using v1::Loader::CallbackService::PushShards;

  grpc::ServerWriteReactor<v1::LoadEvent>* LoadModel(grpc::CallbackServerContext* context,
                                                     const v1::LoadModelRequest* request) override;
  grpc::ServerReadReactor<grpc::ByteBuffer>* PushShards(grpc::CallbackServerContext* context,
                                                        grpc::ByteBuffer* summary) override;
  // A raw push connection on the Unix socket (base/raw_push_wire.h), its magic
  // read: served like a PushShards call on a thread of its own (raw_push_call.h).
  void StartRawPush(UniqueFd fd);
  grpc::ServerUnaryReactor* GetManifest(grpc::CallbackServerContext* context,
                                        const v1::GetManifestRequest* request,
                                        v1::Manifest* response) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) override;
  grpc::ServerUnaryReactor* UnloadModel(grpc::CallbackServerContext* context,
                                        const v1::UnloadModelRequest* request,
                                        v1::UnloadModelResponse* response) override;
  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* context,
                                      const v1::GetStatusRequest* request,
                                      v1::StatusResponse* response) override;
  grpc::ServerWriteReactor<v1::PeerMessage>* ServePeer(grpc::CallbackServerContext* context,
                                                       const v1::PeerServeRequest* request) override;
  grpc::ServerUnaryReactor* FindPeerModel(grpc::CallbackServerContext* context,
                                          const v1::FindPeerModelRequest* request,
                                          v1::FindPeerModelResponse* response) override;

 private:
  // A load's bytes from `addresses` (a peer source, or a path load's holders).
  void PullFromPeers(std::shared_ptr<LoadJob> job, std::vector<std::string> addresses, std::string peer_model_id,
                     uint32_t streams, const std::vector<ShardInput>* expected, std::string expected_config);

  LoaderServiceDeps deps_;
};

}  // namespace weightd
