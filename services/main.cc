// weightd: loads checkpoints into FP8 device memory and hands it to workers.
// Flags live here and only here.
#include <algorithm>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "base/dashed_flags.h"
#include "base/flag_help.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "base/byte_size.h"
#include "base/container_limits.h"
#include "base/log.h"
#include "kernels/quantize_fast.h"
#include "services/load/push_pinning.h"
#include "services/server/daemon.h"

ABSL_FLAG(std::string, listen, "unix:/run/weightd/weightd.sock",
          "gRPC addresses, comma-separated: unix:/path for a Unix socket (mode 0660), host:port for TCP, "
          "e.g. --listen=unix:/run/weightd/weightd.sock,127.0.0.1:9500");
ABSL_FLAG(std::string, handle_socket, "/run/weightd/handles.sock",
          "Unix socket that passes memory handles to workers; a connection is a lease, "
          "e.g. --handle-socket=/run/weightd/handles.sock");
ABSL_FLAG(std::string, metrics_address, "0.0.0.0:9400",
          "Prometheus endpoint host:port (port 0 picks a free one); empty turns it off, "
          "e.g. --metrics-address=127.0.0.1:9400");
ABSL_FLAG(std::string, health_address, "",
          "host:port serving only the standard gRPC health service, for kubelet gRPC probes; empty turns it off, "
          "e.g. --health-address=0.0.0.0:9401");
ABSL_FLAG(std::string, backend, "auto",
          "Device backend: host (memfd virtual devices), cuda, or auto (cuda where a GPU is), e.g. --backend=host");
ABSL_FLAG(int, host_devices, 1,
          "Number of host virtual devices (host backend), e.g. --host-devices=2 for tensor parallelism on CPU");
ABSL_FLAG(std::string, cuda_handles, "vmm",
          "How workers receive GPU memory: vmm (cuMemCreate POSIX fds over the handle socket) or ipc (legacy "
          "cudaIpcMemHandle_t in the manifest), e.g. --cuda-handles=ipc");
ABSL_FLAG(int, nccl_min_ranks, 2,
          "Loads over at least this many GPUs use an NCCL communicator; smaller ones copy in process (1 sends "
          "one-GPU loads through NCCL too, to test it), e.g. --nccl-min-ranks=1");
ABSL_FLAG(std::string, staging_ring_bytes, "auto",
          "Device memory (and as much pinned host memory) per GPU for the staging ring; auto: slots of 4 to "
          "8 MiB, the rings of all GPUs together at most 2/3 of the last-level cache, e.g. 64MiB");
ABSL_FLAG(int, staging_slots, 16,
          "Slots the staging ring of each GPU is cut into: as many chunks are filled or in flight at once, "
          "e.g. --staging-slots=32");
ABSL_FLAG(int, staging_copy_streams, 1,
          "Host-to-device streams per GPU that the staging ring's copies take in turn, e.g. "
          "--staging-copy-streams=4");
ABSL_FLAG(std::string, staging_blocking_waits, "auto",
          "CUDA: threads waiting for a free staging slot (or for the copies from a pinned source) sleep until "
          "the GPU is done instead of spinning on a core. auto: a push's threads (shared by its streams) sleep, "
          "a path load's readers spin; true: all sleep; false: all spin, e.g. --staging-blocking-waits=true");
ABSL_FLAG(bool, scales_from_slots, true,
          "CUDA: per-channel and block scales are taken in the pass that copies each chunk into the staging "
          "ring's pinned slot (chunks of whole tile rows) instead of in a pass over the tensor before it: the host reads "
          "every byte once instead of twice, e.g. --scales-from-slots=false");
ABSL_FLAG(bool, park_per_tensor, true,
          "Per-tensor scales: the first rows of each tensor wait unquantized in its own FP8 destination on the "
          "device, their amax taken from the staging copy, while the host takes the amax of the rest; the host "
          "then reads a BF16 tensor 1.5 times instead of twice, e.g. --park-per-tensor=false");
ABSL_FLAG(bool, park_rest_in_arena, false,
          "With --park-per-tensor: the rest of a parked tensor waits unquantized on the device too, in the empty "
          "destinations of the tensors the load places last (no device memory beyond the model's), its amax taken "
          "from the staging copy: the host reads each byte once (no faster on a 16-core host with one GPU, where the "
          "host is not the limit), "
          "e.g. --park-rest-in-arena=true");
ABSL_FLAG(int, quantize_threads, 0,
          "Threads one scale (amax) pass or host quantization of a tensor may use; 0: the cores shared "
          "among the passes running at once (a path load's read threads each run one), e.g. --quantize-threads=1");
ABSL_FLAG(bool, pin_path_sources, false,
          "CUDA: path loads pin 512 MiB blocks of the mapped checkpoint files (read-only) so the GPU copies "
          "them from the page cache in place, instead of through the staging ring's pinned buffers; measured "
          "slower so far (docs/performance.md), e.g. --pin-path-sources=true");
ABSL_FLAG(std::string, pin_pushed_tensors, "true",
          "CUDA: a pushed tensor gathered on the host for quantization is pinned (read-only) while it is "
          "placed, so the GPU copies it in place instead of through the staging ring's pinned buffers: one "
          "host copy of every byte fewer (a third less daemon CPU); the pin stays with the stream's buffer "
          "for the tensors it gathers next, and faster at 1, 4 and 8 streams (per-tensor and stored tensors; "
          "docs/performance.md). true: always; auto: while at most 4 push streams are open in the daemon "
          "(the default while each tensor was pinned anew); false: never, e.g. --pin-pushed-tensors=false");
ABSL_FLAG(bool, raw_unix_push, true,
          "The gRPC Unix socket also takes raw push connections (one shard per connection, length-prefixed "
          "ShardChunk frames read straight into the daemon's buffers; weightctl push and the clients use them "
          "on a Unix address), past gRPC's receive path (docs/api.md). false: gRPC only (clients fall "
          "back to gRPC by themselves), e.g. --raw-unix-push=false");
ABSL_FLAG(int, max_raw_push_connections, 512,
          "Raw push connections served at once (a thread each); one more is closed before its greeting and "
          "its client pushes over gRPC instead, e.g. --max-raw-push-connections=64");
ABSL_FLAG(bool, direct_cold_reads, false,
          "Path loads read checkpoint segments that are not in the page cache with O_DIRECT (past the page "
          "cache, two 8 MiB requests in flight per read thread, a buffer of at most 128 MiB per read thread) "
          "instead of through the page cache (dropped again after); measured slower on the disks tried so far "
          "(docs/performance.md), e.g. --direct-cold-reads=true");
ABSL_FLAG(int, pin_threads, 4,
          "With --pin-path-sources: threads pinning the blocks of a path load ahead of its readers, e.g. "
          "--pin-threads=8");
ABSL_FLAG(std::string, device_memory_limit, "0",
          "Most device memory weightd may hold per device, e.g. 70GiB; 0 means the device's capacity");
ABSL_FLAG(std::string, host_memory_limit, "auto",
          "Host memory for pushed bytes not yet on the device (received messages, tensors gathered for "
          "quantization); pushes slow down through gRPC flow control at the limit. auto: a quarter of the "
          "memory the container may use (its cgroup's memory limit, or physical memory where that is "
          "smaller or none); 0: no limit; e.g. --host-memory-limit=8GiB");
ABSL_FLAG(std::string, host_write_bandwidth, "0",
          "Host backend only, for tests and demos: bytes per second a virtual device takes writes at "
          "(a slow device); 0: memory speed; e.g. --host-write-bandwidth=200MiB");
ABSL_FLAG(int, read_threads, 0,
          "Threads reading the shards of one path load in parallel; 0: one per CPU the container may use "
          "(cgroup CPU quota, affinity mask), at least 2, at most 16, "
          "e.g. --read-threads=8");
ABSL_FLAG(std::string, read_segment_bytes, "64MiB",
          "A path load cuts shards into segments of about this size (whole tensors, or pieces of a large tensor "
          "stored unchanged), read by the read threads in parallel, e.g. --read-segment-bytes=32MiB");
ABSL_FLAG(std::string, model_root, "",
          "Directory that path sources must lie in; empty turns path sources off, e.g. --model-root=/models");
ABSL_FLAG(std::string, allowed_uids, "",
          "Comma-separated uids that may connect to the Unix sockets (checked with SO_PEERCRED); empty: the "
          "daemon's own uid and root, e.g. --allowed-uids=1000,1001");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain for TCP listeners, e.g. --tls-cert=/etc/weightd/tls.crt");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for TCP listeners, e.g. --tls-key=/etc/weightd/tls.key");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle: TCP clients must present a certificate it signed (mutual TLS); a TLS listener needs it "
          "unless --tls-allow-unauthenticated-clients, e.g. --tls-client-ca=/etc/weightd/ca.crt");
ABSL_FLAG(bool, tls_allow_unauthenticated_clients, false,
          "Allow TLS listeners without --tls-client-ca (anyone who reaches the port can load and unload models; "
          "logged as a warning at start), e.g. --tls-allow-unauthenticated-clients");
ABSL_FLAG(bool, insecure_tcp, false,
          "Allow TCP listeners without TLS (anyone who reaches the port can load and unload models; logged as a "
          "warning at start), e.g. --insecure-tcp");
ABSL_FLAG(std::string, peers, "",
          "Other weightd daemons this one may ask for models (path loads with prefer_peers): comma-separated "
          "host:port (mutual TLS) or unix:/path, or one DNS target whose every address is a peer, e.g. "
          "--peers=dns:///weightd-peers.default.svc.cluster.local:7070");
ABSL_FLAG(std::string, peer_tls_ca, "", "PEM CA that signed the peers' certificates, e.g. --peer-tls-ca=/etc/weightd/ca.crt");
ABSL_FLAG(std::string, peer_tls_cert, "",
          "PEM certificate this daemon shows its peers (mutual TLS), e.g. --peer-tls-cert=/etc/weightd/tls.crt");
ABSL_FLAG(std::string, peer_tls_key, "", "PEM private key of --peer-tls-cert, e.g. --peer-tls-key=/etc/weightd/tls.key");
ABSL_FLAG(std::string, peer_tls_server_name, "",
          "Name the peers' certificates carry, where it is not the address dialled (a DNS target's addresses), "
          "e.g. --peer-tls-server-name=weightd-peers.default.svc");
ABSL_FLAG(std::string, peer_serve_bandwidth, "0",
          "Most bytes per second this daemon serves to all its peers together; 0: no cap, e.g. "
          "--peer-serve-bandwidth=1GiB");
ABSL_FLAG(int, peer_serve_streams, 64, "Most peer streams served at once, e.g. --peer-serve-streams=16");
ABSL_FLAG(std::string, test_corrupt_served_tensor, "",
          "Testing only: flips one byte of this tensor in what is served to peers (a bad link), e.g. "
          "--test-corrupt-served-tensor=model.layers.0.mlp.down_proj.weight");
ABSL_FLAG(std::string, test_cgroup_root, "",
          "Testing only: reads the cgroup files (proc/self/cgroup, proc/self/mountinfo and the mounts they name) "
          "under this directory instead of /, e.g. --test-cgroup-root=/tmp/cgroup-fixture");
ABSL_FLAG(int, test_stop_handle_server_after_seconds, 0,
          "Testing only: the handle socket's thread ends after this many seconds, as if it had died (health turns "
          "NOT_SERVING), e.g. --test-stop-handle-server-after-seconds=1");
ABSL_FLAG(std::string, test_hang_collective, "",
          "Testing only, host backend: every call of this collective operation (broadcast or all_reduce) of a "
          "tensor-parallel load (tp 2 or more) never returns, as a wedged NCCL call, e.g. "
          "--test-hang-collective=broadcast");
ABSL_FLAG(int, push_idle_timeout_seconds, 300,
          "A push load that receives nothing (no stream opens, no byte arrives) this long fails with DEADLINE_EXCEEDED, "
          "and so does a push stream that receives nothing this long after it opened, "
          "e.g. --push-idle-timeout-seconds=60");
ABSL_FLAG(int, shutdown_grace_seconds, 10,
          "On SIGTERM, once every load has failed: how long to wait for threads still in a device call before "
          "exiting with status 3 without them, e.g. --shutdown-grace-seconds=20");
ABSL_FLAG(std::string, max_header_bytes, "100MiB", "Largest safetensors header accepted, e.g. --max-header-bytes=16MiB");
ABSL_FLAG(int64_t, max_tensors, 1 << 20, "Most tensors in one shard, e.g. --max-tensors=100000");
ABSL_FLAG(int64_t, max_tensor_name_bytes, 1024, "Longest tensor name, e.g. --max-tensor-name-bytes=512");
ABSL_FLAG(std::string, max_model_bytes, "0", "Most source bytes of one load, e.g. 2TiB; 0: no limit");
ABSL_FLAG(int64_t, max_concurrent_loads, 0, "Most models loading at once; 0: no limit, e.g. --max-concurrent-loads=2");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warning or error, e.g. --log-level=debug");
ABSL_FLAG(std::string, log_format, "auto",
          "json (one object per line), text, or auto (text on a terminal), e.g. --log-format=json");

namespace {

// Exit status after SIGTERM when Shutdown left a thread in a device call that
// never returned (docs/running.md); 0 otherwise, 2 for a bad start.
constexpr int kExitAbandonedThreads = 3;

int Fail(const std::string& message) {
  std::fprintf(stderr, "weightd: %s\n", message.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  weightd::ConfigureFlagHelp("weightd", R"(weightd [FLAGS]: loads checkpoints into FP8 device memory for workers. e.g.
  weightd --listen=unix:/run/weightd/weightd.sock --handle-socket=/run/weightd/handles.sock \
          --model-root=/models --backend=cuda
Flags take --dashed-names or --underscored_names.)");
  std::vector<std::string> storage;
  std::vector<char*> args = weightd::AcceptDashedFlags(argc, argv, storage);
  absl::ParseCommandLine(static_cast<int>(args.size()), args.data());

  weightd::LogLevel level;
  if (!weightd::ParseLogLevel(absl::GetFlag(FLAGS_log_level), &level)) return Fail("bad --log-level");
  weightd::SetLogLevel(level);
  std::string format = absl::GetFlag(FLAGS_log_format);
  if (format == "auto") format = ::isatty(STDERR_FILENO) ? "text" : "json";
  if (format != "json" && format != "text") return Fail("--log-format must be json, text or auto");
  weightd::SetLogFormat(format == "json" ? weightd::LogFormat::kJson : weightd::LogFormat::kText);

  weightd::DaemonOptions options;
  for (auto part : absl::StrSplit(absl::GetFlag(FLAGS_listen), ',', absl::SkipEmpty())) {
    options.listen.emplace_back(part);
  }
  options.handle_socket = absl::GetFlag(FLAGS_handle_socket);
  options.metrics_address = absl::GetFlag(FLAGS_metrics_address);
  options.health_address = absl::GetFlag(FLAGS_health_address);
  options.backend = absl::GetFlag(FLAGS_backend);
  options.host_devices = absl::GetFlag(FLAGS_host_devices);
  options.cuda_handles = absl::GetFlag(FLAGS_cuda_handles);
  if (absl::GetFlag(FLAGS_staging_ring_bytes) != "auto") {
    auto ring = weightd::ParseByteSize(absl::GetFlag(FLAGS_staging_ring_bytes));
    if (!ring.ok()) return Fail("--staging-ring-bytes: " + std::string(ring.status().message()));
    if (*ring == 0) return Fail("--staging-ring-bytes must be more than 0 (or auto)");
    options.staging_ring_bytes = *ring;
  }
  options.staging_slots = absl::GetFlag(FLAGS_staging_slots);
  options.staging_copy_streams = absl::GetFlag(FLAGS_staging_copy_streams);
  absl::StatusOr<weightd::GpuWaits> waits = weightd::ParseGpuWaits(absl::GetFlag(FLAGS_staging_blocking_waits));
  if (!waits.ok()) return Fail(std::string(waits.status().message()));
  options.staging_waits = *waits;
  options.scales_from_slots = absl::GetFlag(FLAGS_scales_from_slots);
  options.park_per_tensor = absl::GetFlag(FLAGS_park_per_tensor);
  options.park_rest_in_arena = absl::GetFlag(FLAGS_park_rest_in_arena);
  if (options.park_rest_in_arena && !options.park_per_tensor) {
    return Fail("--park-rest-in-arena needs --park-per-tensor=true");
  }
  if (options.staging_slots < 1 || options.staging_copy_streams < 1) {
    return Fail("--staging-slots and --staging-copy-streams must be at least 1");
  }
  options.nccl_min_ranks = absl::GetFlag(FLAGS_nccl_min_ranks);
  options.pin_path_sources = absl::GetFlag(FLAGS_pin_path_sources);
  absl::StatusOr<int> pin_pushed = weightd::PushPinning::ParseFlag(absl::GetFlag(FLAGS_pin_pushed_tensors));
  if (!pin_pushed.ok()) return Fail(std::string(pin_pushed.status().message()));
  options.pin_pushed_max_streams = *pin_pushed;
  options.raw_unix_push = absl::GetFlag(FLAGS_raw_unix_push);
  if (absl::GetFlag(FLAGS_max_raw_push_connections) < 0) return Fail("--max-raw-push-connections must be at least 0");
  options.max_raw_push_connections = static_cast<size_t>(absl::GetFlag(FLAGS_max_raw_push_connections));
  if (options.nccl_min_ranks < 1) return Fail("--nccl-min-ranks must be at least 1");
  auto limit = weightd::ParseByteSize(absl::GetFlag(FLAGS_device_memory_limit));
  if (!limit.ok()) return Fail("--device-memory-limit: " + std::string(limit.status().message()));
  options.device_memory_limit = *limit;
  // What every `auto` size follows: the container's limits, not the node's.
  std::string cgroup_root = absl::GetFlag(FLAGS_test_cgroup_root);
  options.limits = weightd::ReadContainerLimits(cgroup_root.empty() ? "/" : cgroup_root,
                                                weightd::ReadNodeResources());
  if (!options.limits.problem.empty()) {
    weightd::LogEvent(weightd::LogLevel::kWarning, "cgroup_unreadable",
                      {{"problem", options.limits.problem}, {"using", "the node's figure"}});
  }
  if (absl::GetFlag(FLAGS_host_memory_limit) == "auto") {
    options.host_memory_limit = options.limits.memory_bytes / 4;
  } else {
    auto host_limit = weightd::ParseByteSize(absl::GetFlag(FLAGS_host_memory_limit));
    if (!host_limit.ok()) return Fail("--host-memory-limit: " + std::string(host_limit.status().message()));
    options.host_memory_limit = *host_limit;
  }
  auto bandwidth = weightd::ParseByteSize(absl::GetFlag(FLAGS_host_write_bandwidth));
  if (!bandwidth.ok()) return Fail("--host-write-bandwidth: " + std::string(bandwidth.status().message()));
  options.host_write_bytes_per_second = *bandwidth;
  options.model_root = absl::GetFlag(FLAGS_model_root);
  options.path_read.read_threads = absl::GetFlag(FLAGS_read_threads);
  options.path_read.pin_threads = absl::GetFlag(FLAGS_pin_threads);
  options.path_read.pin_sources = options.pin_path_sources;
  options.path_read.direct_cold_reads = absl::GetFlag(FLAGS_direct_cold_reads);
  if (options.path_read.pin_threads < 1) return Fail("--pin-threads must be at least 1");
  if (absl::GetFlag(FLAGS_quantize_threads) < 0) return Fail("--quantize-threads must be at least 0");
  weightd::kernels::SetDefaultQuantizeThreads(absl::GetFlag(FLAGS_quantize_threads));
  if (options.path_read.read_threads == 0) {
    // Measured on a 16-core H200 host: 16 threads load the 8B-shaped model 8% faster than 8.
    options.path_read.read_threads = std::clamp(options.limits.cpus, 2, 16);
  }
  if (options.path_read.read_threads < 1) return Fail("--read-threads must be at least 1 (or 0: one per core)");
  auto segment = weightd::ParseByteSize(absl::GetFlag(FLAGS_read_segment_bytes));
  if (!segment.ok()) return Fail("--read-segment-bytes: " + std::string(segment.status().message()));
  options.path_read.segment_bytes = *segment;
  for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_allowed_uids), ',', absl::SkipEmpty())) {
    uint32_t uid = 0;
    if (!absl::SimpleAtoi(part, &uid)) return Fail("--allowed-uids: '" + std::string(part) + "' is not a uid");
    options.allowed_uids.push_back(static_cast<uid_t>(uid));
  }
  options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  options.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  options.tls_allow_unauthenticated_clients = absl::GetFlag(FLAGS_tls_allow_unauthenticated_clients);
  options.insecure_tcp = absl::GetFlag(FLAGS_insecure_tcp);
  options.peers = absl::GetFlag(FLAGS_peers);
  options.peer_tls.ca_file = absl::GetFlag(FLAGS_peer_tls_ca);
  options.peer_tls.cert_file = absl::GetFlag(FLAGS_peer_tls_cert);
  options.peer_tls.key_file = absl::GetFlag(FLAGS_peer_tls_key);
  options.peer_tls.server_name = absl::GetFlag(FLAGS_peer_tls_server_name);
  auto serve_bandwidth = weightd::ParseByteSize(absl::GetFlag(FLAGS_peer_serve_bandwidth));
  if (!serve_bandwidth.ok()) return Fail("--peer-serve-bandwidth: " + std::string(serve_bandwidth.status().message()));
  options.peer_serve_bandwidth = *serve_bandwidth;
  if (absl::GetFlag(FLAGS_peer_serve_streams) < 1) return Fail("--peer-serve-streams must be at least 1");
  options.peer_serve_streams = static_cast<uint32_t>(absl::GetFlag(FLAGS_peer_serve_streams));
  options.test_corrupt_served_tensor = absl::GetFlag(FLAGS_test_corrupt_served_tensor);
  options.test_stop_handle_server_after_seconds = absl::GetFlag(FLAGS_test_stop_handle_server_after_seconds);
  options.test_hang_collective = absl::GetFlag(FLAGS_test_hang_collective);
  if (absl::GetFlag(FLAGS_push_idle_timeout_seconds) <= 0) return Fail("--push-idle-timeout-seconds must be positive");
  options.push_idle_timeout = std::chrono::seconds(absl::GetFlag(FLAGS_push_idle_timeout_seconds));
  if (absl::GetFlag(FLAGS_shutdown_grace_seconds) < 1) return Fail("--shutdown-grace-seconds must be at least 1");
  options.shutdown_grace = std::chrono::seconds(absl::GetFlag(FLAGS_shutdown_grace_seconds));
  auto header_bytes = weightd::ParseByteSize(absl::GetFlag(FLAGS_max_header_bytes));
  if (!header_bytes.ok()) return Fail("--max-header-bytes: " + std::string(header_bytes.status().message()));
  options.parse_limits.max_header_bytes = *header_bytes;
  if (absl::GetFlag(FLAGS_max_tensors) <= 0 || absl::GetFlag(FLAGS_max_tensor_name_bytes) <= 0) {
    return Fail("--max-tensors and --max-tensor-name-bytes must be positive");
  }
  options.parse_limits.max_tensors = static_cast<size_t>(absl::GetFlag(FLAGS_max_tensors));
  options.parse_limits.max_name_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_max_tensor_name_bytes));
  auto model_bytes = weightd::ParseByteSize(absl::GetFlag(FLAGS_max_model_bytes));
  if (!model_bytes.ok()) return Fail("--max-model-bytes: " + std::string(model_bytes.status().message()));
  options.max_model_bytes = *model_bytes;
  if (absl::GetFlag(FLAGS_max_concurrent_loads) < 0) return Fail("--max-concurrent-loads must not be negative");
  options.max_concurrent_loads = static_cast<size_t>(absl::GetFlag(FLAGS_max_concurrent_loads));

  // Signals are taken by sigwait below, never by a handler on a random thread.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  auto daemon = weightd::Daemon::Start(options);
  if (!daemon.ok()) return Fail(std::string(daemon.status().ToString()));
  int sig = 0;
  sigwait(&signals, &sig);
  weightd::LogLifecycle("signal", {{"signal", strsignal(sig)}});
  (*daemon)->Shutdown();
  if ((*daemon)->abandoned_threads() > 0) {
    // A thread is stuck in a device call: running destructors (ours, the CUDA
    // runtime's) beside it could block or crash, so the process ends here and
    // the kernel ends that thread. The sockets are already removed.
    std::_Exit(kExitAbandonedThreads);
  }
  daemon->reset();
  return 0;
}
