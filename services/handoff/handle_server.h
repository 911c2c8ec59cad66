// The handle socket: a Unix stream socket through which workers receive the
// memory file descriptors of a resident model. One connection holds at most one
// lease: the worker sends an AttachRequest frame, the server answers with an
// AttachResponse frame carrying one descriptor per allocation (SCM_RIGHTS). When
// the worker closes the connection (or dies), or sends anything more, the lease
// ends. The peer's uid is checked with SO_PEERCRED.
// Thread-safety: one internal poll thread does all socket work and calls the
// AttachHandler and every on_lease_end; Shutdown() and active_leases() may be
// called from any thread (but not from inside a handler callback).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/unique_fd.h"
#include "services/handoff/request_frame.h"
#include "weightd/v1/handoff.pb.h"

namespace weightd::handoff {

struct PeerCredentials {
  pid_t pid;
  uid_t uid;
  gid_t gid;
};

struct AttachGrant {
  v1::AttachResponse response;  // code != 0: refused, no descriptors are sent
  std::vector<UniqueFd> fds;    // sent with the response, then closed here
  std::function<void()> on_lease_end;  // called once when the connection closes; may be empty
};

class AttachHandler {
 public:
  virtual ~AttachHandler() = default;
  // Runs on the server's poll thread: must be quick and must not block.
  virtual AttachGrant Attach(const PeerCredentials& peer, const v1::AttachRequest& request) = 0;
};

struct HandleServerOptions {
  std::string socket_path;
  mode_t mode = 0660;
  std::vector<uid_t> allowed_uids;  // empty: the daemon's euid and root; checked with SO_PEERCRED
  size_t max_connections = 1024;
  absl::Duration request_timeout = absl::Seconds(10);  // a connection silent this long is closed
  // Testing only: the serving thread ends after this long, as if it had died.
  absl::Duration test_stop_after = absl::InfiniteDuration();
};

class HandleServer {
 public:
  // Binds `options.socket_path` (replacing a stale socket file), sets its mode,
  // and starts serving. `handler` must outlive the server.
  static absl::StatusOr<std::unique_ptr<HandleServer>> Start(const HandleServerOptions& options,
                                                             AttachHandler* handler);
  ~HandleServer();
  HandleServer(const HandleServer&) = delete;
  HandleServer& operator=(const HandleServer&) = delete;

  // Idempotent. Closes the listener and every connection, calling on_lease_end
  // of each live lease, and unlinks the socket file.
  void Shutdown();
  size_t active_leases() const { return active_leases_.load(std::memory_order_relaxed); }
  // False once the serving thread has ended for any reason but Shutdown: no
  // attach is answered any more (health turns NOT_SERVING).
  bool serving() const { return serving_.load(); }

 private:
  struct Connection;
  HandleServer(const HandleServerOptions& options, AttachHandler* handler);
  void Run();
  bool AcceptAll();  // false when accept failed for a reason other than an empty backlog
  // Returns false when the connection is to be closed.
  bool ServeReadable(Connection& conn);
  bool ServeRequest(Connection& conn);
  void Close(Connection& conn);

  HandleServerOptions options_;
  AttachHandler* handler_;
  std::vector<uid_t> allowed_uids_;
  UniqueFd listener_;
  UniqueFd wake_;  // eventfd: makes the poll thread return for Shutdown
  dev_t socket_dev_ = 0;
  ino_t socket_ino_ = 0;
  std::vector<std::unique_ptr<Connection>> connections_;  // poll thread only
  std::atomic<size_t> active_leases_{0};
  std::atomic<bool> serving_{true};
  std::mutex shutdown_mu_;
  bool shut_down_ = false;
  std::thread thread_;
};

}  // namespace weightd::handoff
