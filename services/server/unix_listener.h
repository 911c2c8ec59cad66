// The gRPC server's Unix socket, owned by weightd rather than by gRPC so that the
// socket's mode is set before anyone can connect and every connection's peer is
// checked with SO_PEERCRED before gRPC sees a byte: an accepted connection from an
// allowed uid is handed to the server (grpc::AddInsecureChannelFromFd); any other
// is logged and closed (its client sees UNAVAILABLE).
//
// With a raw push handler, the listener also tells raw push connections
// (base/raw_push_wire.h) from gRPC ones by their first bytes: a gRPC client sends
// HTTP/2's preface at once, a raw push client kRawPushMagic. The accept thread
// polls connections whose first bytes are still to come, never waiting on one;
// one silent for kSniffTimeout goes to gRPC, whose own handshake timeout applies.
// The first byte is only peeked at (gRPC must see it); once it is the magic's
// ('W', never HTTP/2's 'P') the magic is read as it comes, so a client that sends
// part of it and stalls wakes the thread only when more arrives, and one whose
// bytes then differ from the magic is closed.
// Thread-safety: one internal accept thread; Shutdown() from any one thread.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "base/unique_fd.h"

namespace weightd {

class UnixListener {
 public:
  // Takes a raw push connection whose magic has been read (on the accept thread: must not block).
  using RawPushHandler = std::function<void(UniqueFd)>;
  static constexpr std::chrono::seconds kSniffTimeout{5};

  // Binds `path` (replacing a stale socket file), sets `mode`, listens, and hands
  // connections from `allowed_uids` to `server`, which must outlive the listener,
  // or raw push connections to `raw_push` (empty: every connection goes to gRPC).
  static absl::StatusOr<std::unique_ptr<UnixListener>> Start(const std::string& path, mode_t mode,
                                                             std::vector<uid_t> allowed_uids,
                                                             grpc::Server* server, RawPushHandler raw_push = {});
  ~UnixListener();
  UnixListener(const UnixListener&) = delete;
  UnixListener& operator=(const UnixListener&) = delete;

  // Stops accepting and removes the socket file. Idempotent.
  void Shutdown();
  // False once the accepting thread has ended for any reason but Shutdown: the
  // socket no longer takes connections (health turns NOT_SERVING).
  bool serving() const { return serving_.load(); }

 private:
  // A connection whose first bytes are still to come.
  struct Pending {
    UniqueFd fd;
    std::chrono::steady_clock::time_point deadline;
    size_t matched = 0;  // bytes of kRawPushMagic read (consumed) so far
  };

  UnixListener(std::string path, std::vector<uid_t> allowed_uids, grpc::Server* server, RawPushHandler raw_push);
  void Run();
  void AcceptAll();
  // Looks at a pending connection's first bytes: true once it has been handed on (or closed).
  bool Sniff(Pending& pending);

  const std::string path_;
  const std::vector<uid_t> allowed_uids_;
  grpc::Server* server_;
  const RawPushHandler raw_push_;
  std::vector<Pending> pending_;  // the accept thread's
  UniqueFd listener_;
  UniqueFd wake_;
  std::thread thread_;
  bool shut_down_ = false;
  std::atomic<bool> serving_{true};
};

}  // namespace weightd
