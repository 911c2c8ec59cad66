// The gRPC server's Unix socket, owned by weightd rather than by gRPC so that the
// socket's mode is set before anyone can connect and every connection's peer is
// checked with SO_PEERCRED before gRPC sees a byte: an accepted connection from an
// allowed uid is handed to the server (grpc::AddInsecureChannelFromFd); any other
// is logged and closed (its client sees UNAVAILABLE).
// Thread-safety: one internal accept thread; Shutdown() from any one thread.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <atomic>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "base/unique_fd.h"

namespace weightd {

class UnixListener {
 public:
  // Binds `path` (replacing a stale socket file), sets `mode`, listens, and hands
  // connections from `allowed_uids` to `server`, which must outlive the listener.
  static absl::StatusOr<std::unique_ptr<UnixListener>> Start(const std::string& path, mode_t mode,
                                                             std::vector<uid_t> allowed_uids,
                                                             grpc::Server* server);
  ~UnixListener();
  UnixListener(const UnixListener&) = delete;
  UnixListener& operator=(const UnixListener&) = delete;

  // Stops accepting and removes the socket file. Idempotent.
  void Shutdown();
  // False once the accepting thread has ended for any reason but Shutdown: the
  // socket no longer takes connections (health turns NOT_SERVING).
  bool serving() const { return serving_.load(); }

 private:
  UnixListener(std::string path, std::vector<uid_t> allowed_uids, grpc::Server* server);
  void Run();

  const std::string path_;
  const std::vector<uid_t> allowed_uids_;
  grpc::Server* server_;
  UniqueFd listener_;
  UniqueFd wake_;
  std::thread thread_;
  bool shut_down_ = false;
  std::atomic<bool> serving_{true};
};

}  // namespace weightd
