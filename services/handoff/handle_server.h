// The handle socket: a Unix stream socket through which workers receive the
// memory file descriptors of a resident model. One connection holds at most one
// lease: the worker sends an AttachRequest frame, the server answers with an
// AttachResponse frame carrying one descriptor per allocation (SCM_RIGHTS). When
// the worker closes the connection (or dies), or sends anything more, the lease
// ends. The peer's uid is checked with SO_PEERCRED at accept. Every socket is
// non-blocking and every answer is sent as the socket takes it
// (HandleConnection), so one worker that does not read delays no one else.
// Thread-safety: one internal poll thread does all socket work and calls the
// AttachHandler and every on_lease_end; Shutdown() and active_leases() may be
// called from any thread (but not from inside a handler callback).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/unique_fd.h"
#include "services/handoff/attach_handler.h"
#include "services/handoff/handle_connection.h"

namespace weightd::handoff {

struct HandleServerOptions {
  std::string socket_path;
  mode_t mode = 0660;
  std::vector<uid_t> allowed_uids;  // empty: the daemon's euid and root; checked with SO_PEERCRED
  size_t max_connections = 1024;
  absl::Duration request_timeout = absl::Seconds(10);  // a connection silent this long is closed
  // A worker that has not taken its whole answer this long after it was ready is
  // dropped: its lease, granted but not delivered, ends, and its descriptors close.
  // While it waits, it holds its answer (at most kMaxFrameBytes) and nothing else.
  absl::Duration answer_timeout = absl::Seconds(10);
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
  HandleServer(const HandleServerOptions& options, AttachHandler* handler);
  void Run();
  bool AcceptAll();  // false when accept failed for a reason other than an empty backlog

  HandleServerOptions options_;
  AttachHandler* handler_;
  std::vector<uid_t> allowed_uids_;
  UniqueFd listener_;
  UniqueFd wake_;  // eventfd: makes the poll thread return for Shutdown
  dev_t socket_dev_ = 0;
  ino_t socket_ino_ = 0;
  std::vector<std::unique_ptr<HandleConnection>> connections_;  // poll thread only
  std::atomic<size_t> active_leases_{0};
  std::atomic<bool> serving_{true};
  std::mutex shutdown_mu_;
  bool shut_down_ = false;
  std::thread thread_;
};

}  // namespace weightd::handoff
