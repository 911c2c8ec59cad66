// weightctl: the command-line client of weightd. Flags are parsed here only.
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_split.h"
#include "base/dashed_flags.h"
#include "base/flag_help.h"
#include "client/weightctl/cli.h"
#include "base/resident_buffers.h"

ABSL_FLAG(std::string, address, "unix:/run/weightd/weightd.sock",
          "gRPC address of the daemon, e.g. --address=unix:/run/weightd/weightd.sock or --address=127.0.0.1:9500");
ABSL_FLAG(std::string, tls_ca, "",
          "TCP addresses: PEM CA bundle that signed the daemon's certificate (TLS); without it, with --tls-cert "
          "or --tls-server-name, the system's roots, e.g. --tls-ca=/etc/weightd/ca.crt");
ABSL_FLAG(std::string, tls_cert, "",
          "TCP addresses: PEM certificate chain of this client, for a daemon with --tls-client-ca (mutual TLS), "
          "e.g. --tls-cert=/etc/weightd/client.crt");
ABSL_FLAG(std::string, tls_key, "", "TCP addresses: PEM private key of --tls-cert, e.g. --tls-key=/etc/weightd/client.key");
ABSL_FLAG(std::string, tls_server_name, "",
          "TCP addresses: the name the daemon's certificate carries when it is not the host in --address (TLS), "
          "e.g. --tls-server-name=weightd.example");
ABSL_FLAG(std::string, handle_socket, "/run/weightd/handles.sock",
          "export: the daemon's handle socket, e.g. --handle-socket=/run/weightd/handles.sock");
ABSL_FLAG(bool, json, false,
          "manifest, list, status, verify: print the result as JSON for scripts, e.g. weightctl status --json");
ABSL_FLAG(int, rank, -1,
          "manifest, export: one tensor-parallel rank (default: every rank / rank 0), e.g. --rank=1");
ABSL_FLAG(bool, force, false,
          "unload: drop the model even while workers hold leases, e.g. weightctl unload llama --force");
ABSL_FLAG(std::string, path, "",
          "load: checkpoint directory under the daemon's --model-root, e.g. --path=llama-8b");
ABSL_FLAG(std::string, push, "",
          "load: local .safetensors file or checkpoint directory to stream to the daemon, e.g. --push=./llama-8b");
ABSL_FLAG(std::vector<std::string>, peer, {},
          "load: another weightd that holds the model, host:port or unix:/path; more, comma-separated, are "
          "fallbacks, e.g. --peer=node-a:7070,node-b:7070");
ABSL_FLAG(std::string, peer_model, "", "load --peer: the model's id on the peer (default: the same), e.g. --peer-model=llama");
ABSL_FLAG(uint32_t, peer_streams, 0, "load --peer: parallel streams (default 4), e.g. --peer-streams=8");
ABSL_FLAG(bool, prefer_peers, false,
          "load --path: take the bytes from one of the daemon's --peers that holds the same checkpoint, reading "
          "the files only when none does, e.g. --prefer-peers");
ABSL_FLAG(std::string, scheme, "per-tensor",
          "load, quantize, verify: per-tensor, per-channel, block (128x128) or none, e.g. --scheme=block");
ABSL_FLAG(std::vector<std::string>, ignore, {},
          "load, quantize, verify: tensors left unquantized: exact names or re:REGEX, comma-separated, "
          "e.g. --ignore=re:.*mlp\\.down_proj.*");
ABSL_FLAG(std::string, nonfinite, "fail",
          "load, quantize, verify: NaN/Inf in a weight: fail or saturate (to +-448), e.g. --nonfinite=saturate");
ABSL_FLAG(uint32_t, tp, 1,
          "load: tensor-parallel size (ranks on devices 0..tp-1); verify: of a rank's export, e.g. --tp=2");
ABSL_FLAG(std::string, scale_scope, "tensor",
          "load, verify: FP8 scales under tensor parallelism: tensor (every rank's bytes are the single-device "
          "result sliced) or shard (each rank's slice has its own scale), e.g. --scale-scope=shard");
ABSL_FLAG(std::string, tp_rules, "",
          "load, verify: a JSON file of sharding rules, e.g. [{\"pattern\": \".*\\\\.o_proj\\\\.weight\", "
          "\"split\": \"replicate\"}]");
ABSL_FLAG(std::string, layout, "checkpoint",
          "load, verify, quantize: how each rank's tensors are laid out: checkpoint (its tensors, as an FP8 checkpoint names "
          "them) or vllm (vLLM's fused parameters, used in place), e.g. --layout=vllm");
ABSL_FLAG(bool, writable, false,
          "load: workers may map the memory writable (frameworks that post-process weights in place); "
          "default read-only, e.g. --writable");
ABSL_FLAG(std::string, push_transport, "auto",
          "load --push, push: auto (on a Unix socket the daemon's raw push connection, gRPC where it takes "
          "none; gRPC elsewhere) or grpc (PushShards always), e.g. --push-transport=grpc");
ABSL_FLAG(bool, progress, true, "load, quantize: show progress on stderr, e.g. --progress=false in scripts");

namespace {

constexpr char kUsage[] = R"(weightctl COMMAND [ARGS] [FLAGS]

Commands:
  load MODEL --path DIR | --push DIR | --peer ADDR
                                      load a checkpoint (progress on stderr), e.g.
                                      weightctl load llama --push ./llama-8b
                                      tensor parallel: --tp 8 [--scale-scope shard] [--tp-rules FILE]
                                      for vLLM to use in place: --layout vllm
  push MODEL FILE...                  push shard files into a load that waits for them
  manifest MODEL [--rank R] [--json]  tensors, dtypes, shapes and allocations
  list [--json]                       models: state, resident bytes, leases
  status [--json]                     devices (used, peak, capacity) and models (state,
                                      resident bytes, leases)
  unload MODEL [--force]              free a model (refused while leased unless --force)
  export MODEL DIR [--rank R]         map a rank's memory and write DIR/model.safetensors
  verify CHECKPOINT EXPORT [--json]   check an export (or a quantize output) byte for byte
                                      against the CPU reference, e.g. --scheme block;
                                      a rank's export: --tp N --rank R
  quantize IN OUT                     write an FP8 copy of a checkpoint (dir or .safetensors), e.g.
                                      weightctl quantize ./llama-8b ./llama-8b-fp8 --scheme per-channel

A daemon on TCP with TLS: --address HOST:PORT --tls-ca CA.pem, and for mutual TLS
--tls-cert CERT.pem --tls-key KEY.pem.

Flags take --dashed-names or --underscored_names; weightctl --help lists them all.)";

}  // namespace

int main(int argc, char** argv) {
  weightd::KeepLargeBuffersResident();
  weightd::ConfigureFlagHelp("weightctl", kUsage);
  std::vector<std::string> storage;
  std::vector<char*> args = weightd::AcceptDashedFlags(argc, argv, storage);
  std::vector<char*> positional = absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  if (positional.size() < 2) {
    std::fprintf(stderr, "%s\n", kUsage);
    return 2;
  }
  weightd::ctl::CliOptions options;
  options.address = absl::GetFlag(FLAGS_address);
  options.tls.ca_file = absl::GetFlag(FLAGS_tls_ca);
  options.tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.tls.key_file = absl::GetFlag(FLAGS_tls_key);
  options.tls.server_name = absl::GetFlag(FLAGS_tls_server_name);
  options.handle_socket = absl::GetFlag(FLAGS_handle_socket);
  options.json = absl::GetFlag(FLAGS_json);
  options.rank = absl::GetFlag(FLAGS_rank);
  options.force = absl::GetFlag(FLAGS_force);
  options.path = absl::GetFlag(FLAGS_path);
  options.push = absl::GetFlag(FLAGS_push);
  options.peer = absl::GetFlag(FLAGS_peer);
  options.peer_model = absl::GetFlag(FLAGS_peer_model);
  options.peer_streams = absl::GetFlag(FLAGS_peer_streams);
  options.prefer_peers = absl::GetFlag(FLAGS_prefer_peers);
  options.scheme = absl::GetFlag(FLAGS_scheme);
  options.ignore = absl::GetFlag(FLAGS_ignore);
  options.nonfinite = absl::GetFlag(FLAGS_nonfinite);
  options.tp_size = absl::GetFlag(FLAGS_tp);
  options.scale_scope = absl::GetFlag(FLAGS_scale_scope);
  options.tp_rules = absl::GetFlag(FLAGS_tp_rules);
  options.layout = absl::GetFlag(FLAGS_layout);
  options.writable = absl::GetFlag(FLAGS_writable);
  options.push_transport = absl::GetFlag(FLAGS_push_transport);
  options.progress = absl::GetFlag(FLAGS_progress);

  using Command = std::function<int(const weightd::ctl::CliOptions&, const weightd::ctl::Args&)>;
  const std::map<std::string, Command> commands = {
      {"load", weightd::ctl::RunLoad},         {"push", weightd::ctl::RunPush},
      {"manifest", weightd::ctl::RunManifest}, {"list", weightd::ctl::RunList},
      {"status", weightd::ctl::RunStatus},     {"unload", weightd::ctl::RunUnload},
      {"export", weightd::ctl::RunExport},     {"verify", weightd::ctl::RunVerify},
      {"quantize", weightd::ctl::RunQuantize},
  };
  auto command = commands.find(positional[1]);
  if (command == commands.end()) {
    std::fprintf(stderr, "weightctl: unknown command '%s'\n\n%s\n", positional[1], kUsage);
    return 2;
  }
  weightd::ctl::Args command_args(positional.begin() + 2, positional.end());
  return command->second(options, command_args);
}
