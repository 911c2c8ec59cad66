#include "services/handoff/handle_server.h"

#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "base/fd_passing.h"
#include "base/log.h"
#include "base/wake_fd.h"

namespace weightd::handoff {
namespace {

// Bounds how long one stalled reader can hold the poll thread inside a send.
constexpr int kSendTimeoutSeconds = 5;

absl::Status Errno(const std::string& what) { return absl::ErrnoToStatus(errno, what); }

}  // namespace

struct HandleServer::Connection {
  UniqueFd fd;
  PeerCredentials peer{};
  absl::Time request_deadline;
  RequestFrameDecoder request;
  bool leased = false;
  // Answered PERMISSION_DENIED at accept; kept open until its request arrives (or
  // the request timeout), so a client sending it does not meet a closed socket.
  bool refused = false;
  std::function<void()> on_lease_end;
};

HandleServer::HandleServer(const HandleServerOptions& options, AttachHandler* handler)
    : options_(options), handler_(handler), allowed_uids_(options.allowed_uids) {
  if (allowed_uids_.empty()) allowed_uids_ = {::geteuid(), 0};
}

HandleServer::~HandleServer() { Shutdown(); }

absl::StatusOr<std::unique_ptr<HandleServer>> HandleServer::Start(const HandleServerOptions& options,
                                                                  AttachHandler* handler) {
  const std::string& path = options.socket_path;
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (handler == nullptr) return absl::InvalidArgumentError("handle server needs an attach handler");
  if (path.empty()) return absl::InvalidArgumentError("handle socket path is empty");
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("handle socket path is ", path.size(),
                                                   " bytes, the limit is ", sizeof(addr.sun_path) - 1,
                                                   ": ", path));
  }
  path.copy(addr.sun_path, path.size());
  const auto* sa = reinterpret_cast<const struct sockaddr*>(&addr);

  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat(path, " exists and is not a socket"));
    }
    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (probe.valid() && ::connect(probe.get(), sa, sizeof(addr)) == 0) {
      return absl::FailedPreconditionError(absl::StrCat("another server is listening on ", path));
    }
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Errno("unlink " + path);
  }

  std::unique_ptr<HandleServer> server(new HandleServer(options, handler));
  server->listener_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!server->listener_.valid()) return Errno("socket");
  if (::bind(server->listener_.get(), sa, sizeof(addr)) != 0) return Errno("bind " + path);
  if (::stat(path.c_str(), &st) != 0) return Errno("stat " + path);
  server->socket_dev_ = st.st_dev;
  server->socket_ino_ = st.st_ino;
  // Before listen(): nobody can connect while the mode is still the umask's.
  if (::chmod(path.c_str(), options.mode) != 0) return Errno("chmod " + path);
  if (::listen(server->listener_.get(), SOMAXCONN) != 0) return Errno("listen " + path);
  server->wake_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!server->wake_.valid()) return Errno("eventfd");
  server->thread_ = std::thread(&HandleServer::Run, server.get());
  return server;
}

void HandleServer::Shutdown() {
  std::lock_guard<std::mutex> lock(shutdown_mu_);
  if (shut_down_) return;
  shut_down_ = true;
  WakeAndJoin(wake_.get(), thread_);
  listener_.reset();
  struct stat st;
  // Only our own socket: a newer server may have replaced the file since.
  if (socket_ino_ != 0 && ::stat(options_.socket_path.c_str(), &st) == 0 && st.st_dev == socket_dev_ &&
      st.st_ino == socket_ino_) {
    ::unlink(options_.socket_path.c_str());
  }
}

void HandleServer::Run() {
  absl::Time accept_paused_until = absl::InfinitePast();
  std::vector<struct pollfd> pfds;
  const absl::Time stop_at = absl::Now() + options_.test_stop_after;
  for (;;) {
    absl::Time now = absl::Now();
    if (now >= stop_at) {
      WEIGHTD_LOG(ERROR) << "handle server: stopping its thread (--test-stop-handle-server-after-seconds)";
      serving_ = false;
      break;
    }
    absl::Time wake_at = std::min(stop_at, accept_paused_until > now ? accept_paused_until : absl::InfiniteFuture());
    pfds.clear();
    pfds.push_back({wake_.get(), POLLIN, 0});
    pfds.push_back({accept_paused_until > now ? -1 : listener_.get(), POLLIN, 0});
    for (const auto& conn : connections_) {
      pfds.push_back({conn->fd.get(), POLLIN, 0});
      if (!conn->leased) wake_at = std::min(wake_at, conn->request_deadline);
    }
    int timeout_ms = -1;
    if (wake_at != absl::InfiniteFuture()) {
      absl::Duration left = std::max(wake_at - now, absl::ZeroDuration());
      timeout_ms = static_cast<int>(absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))));
    }
    int n = ::poll(pfds.data(), pfds.size(), timeout_ms);
    if (n < 0 && errno != EINTR) {
      WEIGHTD_LOG(ERROR) << "handle server: poll failed: " << strerror(errno);
      serving_ = false;
      break;
    }
    if (n > 0 && pfds[0].revents != 0) break;
    now = absl::Now();
    for (size_t i = 0; i < connections_.size(); ++i) {
      Connection& conn = *connections_[i];
      bool keep = true;
      if (n > 0 && pfds[i + 2].revents != 0) keep = ServeReadable(conn);
      if (keep && !conn.leased && now >= conn.request_deadline) keep = false;
      if (!keep) Close(conn);
    }
    std::erase_if(connections_, [](const auto& conn) { return !conn->fd.valid(); });
    // A failing accept (out of descriptors) leaves the listener readable: back off.
    if (n > 0 && pfds[1].revents != 0 && !AcceptAll()) accept_paused_until = now + absl::Milliseconds(100);
  }
  for (auto& conn : connections_) Close(*conn);
  connections_.clear();
}

bool HandleServer::AcceptAll() {
  for (;;) {
    UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd.valid()) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      WEIGHTD_LOG(WARNING) << "handle server: accept failed: " << strerror(errno);
      return false;
    }
    if (connections_.size() >= options_.max_connections) {
      WEIGHTD_LOG(WARNING) << "handle server: refusing a connection, " << connections_.size() << " open";
      continue;
    }
    auto conn = std::make_unique<Connection>();
    struct ucred cred = {};
    socklen_t len = sizeof(cred);
    struct timeval send_timeout = {kSendTimeoutSeconds, 0};
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
        ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof(send_timeout)) != 0) {
      continue;
    }
    conn->fd = std::move(fd);
    conn->peer = {cred.pid, cred.uid, cred.gid};
    if (std::find(allowed_uids_.begin(), allowed_uids_.end(), cred.uid) == allowed_uids_.end()) {
      // Answered at once, not after a first frame: nothing a stranger sends is read.
      v1::AttachResponse response;
      response.set_code(static_cast<int>(absl::StatusCode::kPermissionDenied));
      response.set_message(absl::StrCat("uid ", cred.uid, " is not allowed"));
      (void)SendFrame(conn->fd.get(), response.SerializeAsString());
      WEIGHTD_LOG(WARNING) << "handle server: refused pid " << cred.pid << " (uid " << cred.uid << ")";
      conn->refused = true;
    }
    conn->request_deadline = absl::Now() + options_.request_timeout;
    connections_.push_back(std::move(conn));
  }
}

bool HandleServer::ServeReadable(Connection& conn) {
  if (conn.refused) return false;  // its request (or its close) has come: the answer was sent at accept
  if (!conn.leased) return ServeRequest(conn);
  char byte;
  ssize_t n = ::recv(conn.fd.get(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return true;
  if (n > 0) {
    v1::AttachResponse response;
    response.set_code(static_cast<int>(absl::StatusCode::kFailedPrecondition));
    response.set_message("this connection already holds a lease; open a new connection per lease");
    (void)SendFrame(conn.fd.get(), response.SerializeAsString());
  }
  return false;
}

// Reads what has arrived of the request, without blocking, and answers it once
// it is whole. A refusal closes the connection.
bool HandleServer::ServeRequest(Connection& conn) {
  auto refuse = [&conn](const absl::Status& status) {
    v1::AttachResponse response;
    response.set_code(static_cast<int>(status.code()));
    response.set_message(std::string(status.message()));
    (void)SendFrame(conn.fd.get(), response.SerializeAsString());
    return false;
  };
  std::string buf(conn.request.wanted(), '\0');
  // Exactly up to the frame's end: a byte past it would be a second request.
  ssize_t n = ::recv(conn.fd.get(), buf.data(), buf.size(), MSG_DONTWAIT);
  if (n == 0) return false;  // closed before a whole request
  if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
  absl::Status appended = conn.request.Append(std::string_view(buf.data(), static_cast<size_t>(n)));
  if (!appended.ok()) return refuse(appended);
  if (!conn.request.complete()) return true;  // the rest follows (usually already queued: poll fires again)

  absl::StatusOr<v1::AttachRequest> request = conn.request.Parse();
  if (!request.ok()) return refuse(request.status());
  AttachGrant grant = handler_->Attach(conn.peer, *request);
  if (grant.response.code() != 0) {
    if (grant.on_lease_end) grant.on_lease_end();
    (void)SendFrame(conn.fd.get(), grant.response.SerializeAsString());
    return false;
  }
  std::vector<int> fds;
  for (const UniqueFd& fd : grant.fds) fds.push_back(fd.get());
  const std::string answer = grant.response.SerializeAsString();
  if (answer.size() > kMaxFrameBytes) {  // a rank of very many tensors: said, not a silent close
    if (grant.on_lease_end) grant.on_lease_end();
    return refuse(absl::ResourceExhaustedError(absl::StrCat(
        "the manifest of model '", request->model_id(), "' rank ", request->rank(), " is ", answer.size(),
        " bytes, over the handle socket's frame limit of ", kMaxFrameBytes, " bytes (",
        grant.response.manifest().tensors_size(), " tensors)")));
  }
  absl::Status sent = SendFrame(conn.fd.get(), answer, fds);
  if (!sent.ok()) {
    WEIGHTD_LOG(WARNING) << "handle server: cannot send lease to pid " << conn.peer.pid << ": " << sent;
    if (grant.on_lease_end) grant.on_lease_end();
    return false;
  }
  conn.leased = true;
  conn.on_lease_end = std::move(grant.on_lease_end);
  active_leases_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

// The lease ends before the descriptor closes: a client that waits for the close
// (Lease::Release) knows the daemon no longer counts its lease.
void HandleServer::Close(Connection& conn) {
  if (conn.leased) {
    conn.leased = false;
    active_leases_.fetch_sub(1, std::memory_order_relaxed);
    if (conn.on_lease_end) std::exchange(conn.on_lease_end, nullptr)();
  }
  conn.fd.reset();
}

}  // namespace weightd::handoff
