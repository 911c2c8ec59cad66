// The C++ client of weightd, for inference workers: load a model (with progress),
// read its manifest, attach to a rank and read its tensors in place, unload, list.
// Every error is an absl::Status carrying the daemon's own code and message
// (NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, RESOURCE_EXHAUSTED, ...), or
// UNAVAILABLE when the daemon cannot be reached.
// Thread-safe: one Client may be shared by threads (the gRPC stub is).
//
//   weightd::client::Client client({.address = "unix:/run/weightd/weightd.sock",
//                                   .handle_socket = "/run/weightd/handles.sock"});
//   v1::LoadModelRequest spec = weightd::client::PathSpec("llama", "llama-8b");
//   auto manifest = client.Load(spec, [](const v1::LoadEvent& e) { ... });
//   auto mapping = client.Attach("llama", /*rank=*/0);   // the lease
//   auto q = mapping->Tensor("model.layers.0.mlp.down_proj.weight");  // q->data: no copy
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/cpp/channel.h"
#include "client/cpp/mapping.h"
#include "weightd/v1/loader.grpc.pb.h"

namespace weightd::client {

struct ClientOptions {
  // gRPC address: "unix:/path", a bare "/path" (a Unix socket) or "host:port".
  std::string address = "unix:/run/weightd/weightd.sock";
  // TCP only: TLS towards the daemon, mutual with a client certificate (channel.h).
  TlsOptions tls;
  // The daemon's handle socket (Attach only).
  std::string handle_socket = "/run/weightd/handles.sock";
  // Bounds the daemon's answer to an attach.
  absl::Duration attach_timeout = absl::Seconds(30);
};

// A load spec for a checkpoint directory under the daemon's --model-root.
v1::LoadModelRequest PathSpec(const std::string& model_id, const std::string& path,
                              v1::Scheme scheme = v1::SCHEME_PER_TENSOR, uint32_t tp_size = 1);
// A load spec for a model another weightd holds ("host:port" or "unix:/path"),
// whose FP8 bytes this daemon takes as they are (docs/cluster.md); the scheme
// must be the peer's.
v1::LoadModelRequest PeerSpec(const std::string& model_id, const std::string& peer_address,
                              v1::Scheme scheme = v1::SCHEME_PER_TENSOR, uint32_t tp_size = 1);

class Client {
 public:
  using ProgressCallback = std::function<void(const v1::LoadEvent&)>;

  // A TLS file that cannot be read fails every call but Attach with
  // INVALID_ARGUMENT naming it (ChannelCredentialsFor).
  explicit Client(ClientOptions options);

  // Loads `spec` (or joins the load in progress, or finds the model resident) and
  // blocks until it is READY. `progress` sees every event, the final one (phase
  // READY, carrying the manifest) included, on the calling thread. A push-source
  // spec needs its shards pushed meanwhile (weightctl push, or PushShards).
  absl::StatusOr<v1::Manifest> Load(const v1::LoadModelRequest& spec, const ProgressCallback& progress = nullptr);
  absl::StatusOr<v1::Manifest> Manifest(const std::string& model_id);
  // Attaches over the handle socket and maps the rank's memory: the returned
  // Mapping is the lease.
  absl::StatusOr<Mapping> Attach(const std::string& model_id, uint32_t rank = 0);
  // Returns the bytes freed. FAILED_PRECONDITION while leases are held, unless forced.
  absl::StatusOr<uint64_t> Unload(const std::string& model_id, bool force = false);
  absl::StatusOr<std::vector<v1::ModelInfo>> List();
  // Devices (used, peak, capacity) and models.
  absl::StatusOr<v1::StatusResponse> Status();

 private:
  ClientOptions options_;
  absl::Status channel_status_;             // why there is no stub
  std::unique_ptr<v1::Loader::Stub> stub_;  // null unless channel_status_ is OK
};

}  // namespace weightd::client
