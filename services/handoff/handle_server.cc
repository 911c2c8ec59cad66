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
#include "base/log.h"
#include "base/wake_fd.h"

namespace weightd::handoff {
namespace {

absl::Status Errno(const std::string& what) { return absl::ErrnoToStatus(errno, what); }

}  // namespace

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
      pfds.push_back({conn->fd(), conn->poll_events(), 0});
      wake_at = std::min(wake_at, conn->deadline());
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
      if (!connections_[i]->Step(n > 0 ? pfds[i + 2].revents : 0, now)) connections_[i]->Close();
    }
    std::erase_if(connections_, [](const auto& conn) { return !conn->open(); });
    // A failing accept (out of descriptors) leaves the listener readable: back off.
    if (n > 0 && pfds[1].revents != 0 && !AcceptAll()) accept_paused_until = now + absl::Milliseconds(100);
  }
  for (auto& conn : connections_) conn->Close();
  connections_.clear();
}

bool HandleServer::AcceptAll() {
  const ConnectionTimeouts timeouts{options_.request_timeout, options_.answer_timeout};
  for (;;) {
    UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
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
    struct ucred cred = {};
    socklen_t len = sizeof(cred);
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) continue;
    const PeerCredentials peer{cred.pid, cred.uid, cred.gid};
    auto conn = std::make_unique<HandleConnection>(std::move(fd), peer, timeouts, absl::Now(), handler_,
                                                   &active_leases_);
    if (std::find(allowed_uids_.begin(), allowed_uids_.end(), cred.uid) == allowed_uids_.end()) {
      // Answered at once, not after a first frame: nothing a stranger sends is read.
      WEIGHTD_LOG(WARNING) << "handle server: refused pid " << cred.pid << " (uid " << cred.uid << ")";
      if (!conn->Refuse(absl::PermissionDeniedError(absl::StrCat("uid ", cred.uid, " is not allowed")),
                        absl::Now())) {
        continue;
      }
    }
    connections_.push_back(std::move(conn));
  }
}

}  // namespace weightd::handoff
