// Wires the daemon together: device backend, accounting, registry, executors,
// the gRPC server (Unix socket, optional TCP), health and reflection, the handle
// socket and the metrics endpoint; and takes it apart in order on shutdown.
// Start/Shutdown from one thread; everything it owns is thread-safe.
#pragma once

#include <grpcpp/grpcpp.h>

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/container_limits.h"
#include "services/device/gpu_waits.h"
#include "services/load/push_pinning.h"
#include "services/peer/peer_channels.h"
#include "services/sources/path_source.h"
#include "services/safetensors/header.h"

namespace weightd {

struct DaemonOptions {
  std::vector<std::string> listen;  // "unix:/path" or "host:port"
  std::string handle_socket;
  std::string metrics_address;      // "host:port"; empty: no endpoint
  std::string health_address;       // "host:port" serving only grpc.health.v1; empty: none
  std::string backend = "auto";     // host | cuda | auto
  int host_devices = 1;
  std::string cuda_handles = "vmm";  // vmm (POSIX fds) | ipc (legacy cudaIpcMemHandle_t)
  uint64_t staging_ring_bytes = 0;  // 0: sized to the last-level cache (services/device/ring_size.h)
  int staging_slots = 16;
  int staging_copy_streams = 1;
  GpuWaits staging_waits = GpuWaits::kAuto;  // --staging-blocking-waits
  bool scales_from_slots = true;  // --scales-from-slots
  bool park_per_tensor = true;    // --park-per-tensor
  bool park_rest_in_arena = false;  // --park-rest-in-arena
  bool pin_path_sources = false;    // --pin-path-sources
  // --pin-pushed-tensors (services/load/push_pinning.h): a push stream's gathered
  // tensors are pinned while at most this many push streams are open; 0: never.
  int pin_pushed_max_streams = PushPinning::kAlways;
  bool raw_unix_push = true;        // --raw-unix-push (base/raw_push_wire.h)
  size_t max_raw_push_connections = 512;  // --max-raw-push-connections (RawPushCalls)
  int nccl_min_ranks = 2;  // smaller device groups copy in process
  uint64_t device_memory_limit = 0;  // 0: the device's capacity
  // Host memory for pushed bytes (received messages, gathered tensors); 0: no limit.
  uint64_t host_memory_limit = 0;
  uint64_t host_write_bytes_per_second = 0;  // host backend: emulates a slower device; 0: memory speed
  std::string model_root;
  PathSourceOptions path_read;      // threads and segments of path loads
  int work_threads = 0;             // 0: one per CPU of `limits`, at least 2
  // The memory and CPUs the container may use (base/container_limits.h): the host
  // backend's devices share that memory, and the default thread counts follow its
  // CPUs. Main reads them; left empty, Start reads them from /.
  ContainerLimits limits;

  // Who may connect to the Unix sockets (SO_PEERCRED); empty: the daemon's euid and root.
  std::vector<uid_t> allowed_uids;
  mode_t socket_mode = 0660;
  // TCP listeners need TLS (cert and key) with a client CA (mutual TLS: only clients
  // with a certificate it signed may load or unload), or one of the two explicit
  // opt-outs, which the daemon warns about at start: TLS without client
  // authentication, or no TLS at all.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
  bool tls_allow_unauthenticated_clients = false;
  bool insecure_tcp = false;

  // A push load with no progress this long fails with DEADLINE_EXCEEDED.
  std::chrono::milliseconds push_idle_timeout{std::chrono::minutes(5)};
  // How long Shutdown waits for the executors' threads once every load has failed.
  std::chrono::seconds shutdown_grace{10};
  // Untrusted-input limits; each refusal names the limit.
  safetensors::ParseLimits parse_limits;
  uint64_t max_model_bytes = 0;      // source bytes of one load; 0: no limit
  size_t max_concurrent_loads = 0;   // models LOADING at once; 0: no limit

  // Peers (docs/cluster.md).
  std::string peers;                   // --peers: "host:port,..." or "dns:///host:port"; empty: none
  PeerTlsOptions peer_tls;             // how this daemon connects to peers over TCP
  uint64_t peer_serve_bandwidth = 0;   // bytes per second served to all peers; 0: no cap
  uint32_t peer_serve_streams = 64;    // serving streams at once
  std::string test_corrupt_served_tensor;  // test hook: flips a byte of this tensor on the wire
  int test_stop_handle_server_after_seconds = 0;  // test hook: the handle server's thread ends; 0: never
  std::string test_hang_collective;  // test hook, host backend: "broadcast" or "all_reduce" never returns
};

class Daemon {
 public:
  static absl::StatusOr<std::unique_ptr<Daemon>> Start(const DaemonOptions& options);
  ~Daemon();

  // Stops accepting, aborts loads in progress (their memory is freed), ends every
  // lease, closes the sockets. Idempotent. An executor thread still in a task
  // `shutdown_grace` (10 s by default) after every load has failed (a device call
  // that never returns) is left running, logged as `shutdown_abandoned`, and counted
  // in abandoned_threads();
  // the daemon's state is then never freed, since that thread may still use it,
  // and the caller should end the process (weightd exits with status 3).
  void Shutdown();
  size_t abandoned_threads() const;
  int metrics_port() const;

 private:
  struct State;
  explicit Daemon(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace weightd
