// Wires the daemon together: device backend, accounting, registry, executors,
// the gRPC server (Unix socket, optional TCP), health and reflection, the handle
// socket and the metrics endpoint; and takes it apart in order on shutdown.
// Start/Shutdown from one thread; everything it owns is thread-safe.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "services/sources/path_source.h"

namespace weightd {

struct DaemonOptions {
  std::vector<std::string> listen;  // "unix:/path" or "host:port"
  std::string handle_socket;
  std::string metrics_address;      // "host:port"; empty: no endpoint
  std::string health_address;       // "host:port" serving only grpc.health.v1; empty: none
  std::string backend = "auto";     // host | cuda | auto
  int host_devices = 1;
  std::string cuda_handles = "vmm";  // vmm (POSIX fds) | ipc (legacy cudaIpcMemHandle_t)
  uint64_t staging_ring_bytes = 64ull << 20;
  uint64_t device_memory_limit = 0;  // 0: the device's capacity
  std::string model_root;
  PathSourceOptions path_read;      // threads and segments of path loads
  int work_threads = 0;             // 0: one per core
};

class Daemon {
 public:
  static absl::StatusOr<std::unique_ptr<Daemon>> Start(const DaemonOptions& options);
  ~Daemon();

  // Stops accepting, aborts loads in progress (their memory is freed), ends every
  // lease, closes the sockets. Idempotent.
  void Shutdown();
  int metrics_port() const;

 private:
  struct State;
  explicit Daemon(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace weightd
