// The commands of weightctl. Each takes the parsed options and its positional
// arguments, prints to stdout (results) and stderr (errors, progress), and returns
// the process exit code: 0 success, 1 the operation failed, 2 bad usage.
// Not thread-safe (one command per process).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/cpp/channel.h"
#include "client/cpp/shard_stream.h"
#include "weightd/v1/loader.pb.h"

namespace weightd::ctl {

struct CliOptions {
  std::string address;        // gRPC address of the daemon
  client::TlsOptions tls;     // TCP addresses: TLS towards the daemon (--tls-ca, --tls-cert, ...)
  std::string handle_socket;  // the daemon's handle socket
  bool json = false;
  int rank = -1;              // -1: every rank (manifest) or rank 0 (export)
  bool force = false;
  std::string path;           // load: path source, as the daemon resolves it
  std::string push;           // load: a local .safetensors file or directory to push
  std::vector<std::string> peer;  // load: peer daemons, the first asked first (the rest: fallbacks)
  std::string peer_model;     // load: the model's id on the peer; empty: the same
  uint32_t peer_streams = 0;  // load: parallel streams from the peer; 0: the daemon's default
  bool prefer_peers = false;  // load --path: ask the daemon's --peers first
  std::string scheme = "per-tensor";
  std::vector<std::string> ignore;
  std::string nonfinite = "fail";
  uint32_t tp_size = 1;
  std::string scale_scope = "tensor";
  std::string tp_rules;       // load, verify: a JSON file of sharding rules
  std::string layout = "checkpoint";
  bool writable = false;      // load: placement.writable
  std::string push_transport = "auto";  // load --push, push: auto (raw on a Unix socket) or grpc
  bool progress = true;
};

using Args = std::vector<std::string>;

int RunLoad(const CliOptions& options, const Args& args);
int RunPush(const CliOptions& options, const Args& args);
int RunManifest(const CliOptions& options, const Args& args);
int RunList(const CliOptions& options, const Args& args);
int RunStatus(const CliOptions& options, const Args& args);
int RunUnload(const CliOptions& options, const Args& args);
int RunExport(const CliOptions& options, const Args& args);
int RunVerify(const CliOptions& options, const Args& args);
int RunQuantize(const CliOptions& options, const Args& args);

// --scheme: per-tensor, per-channel, block or none; INVALID_ARGUMENT otherwise.
absl::StatusOr<v1::Scheme> ParseScheme(const std::string& scheme);
// --nonfinite: fail or saturate; INVALID_ARGUMENT otherwise.
absl::StatusOr<v1::NonFinite> ParseNonFinite(const std::string& nonfinite);
// --scale-scope: tensor or shard; INVALID_ARGUMENT otherwise.
absl::StatusOr<v1::ScaleScope> ParseScaleScope(const std::string& scope);
// --push-transport: auto or grpc; INVALID_ARGUMENT otherwise.
absl::StatusOr<client::PushTransport> ParsePushTransport(const std::string& transport);

// --layout: checkpoint or vllm; INVALID_ARGUMENT otherwise.
absl::StatusOr<v1::Layout> ParseLayout(const std::string& layout);

// Prints "weightctl: CODE: message" to stderr and returns 1.
int ReportError(const absl::Status& status);
// Prints "weightctl: usage: ..." to stderr and returns 2.
int Usage(const std::string& text);

}  // namespace weightd::ctl
