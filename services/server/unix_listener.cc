#include "services/server/unix_listener.h"

#include <grpcpp/server_posix.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "base/raw_push_wire.h"
#include "base/wake_fd.h"

namespace weightd {

UnixListener::UnixListener(std::string path, std::vector<uid_t> allowed_uids, grpc::Server* server,
                           RawPushHandler raw_push)
    : path_(std::move(path)), allowed_uids_(std::move(allowed_uids)), server_(server), raw_push_(std::move(raw_push)) {}

UnixListener::~UnixListener() { Shutdown(); }

absl::StatusOr<std::unique_ptr<UnixListener>> UnixListener::Start(const std::string& path, mode_t mode,
                                                                  std::vector<uid_t> allowed_uids,
                                                                  grpc::Server* server, RawPushHandler raw_push) {
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("bad Unix socket path '", path, "'"));
  }
  path.copy(addr.sun_path, path.size());
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return absl::FailedPreconditionError(absl::StrCat(path, " exists and is not a socket"));
    ::unlink(path.c_str());
  }
  std::unique_ptr<UnixListener> listener(
      new UnixListener(path, std::move(allowed_uids), server, std::move(raw_push)));
  listener->listener_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!listener->listener_.valid()) return absl::ErrnoToStatus(errno, "socket");
  const auto* sa = reinterpret_cast<const struct sockaddr*>(&addr);
  if (::bind(listener->listener_.get(), sa, sizeof(addr)) != 0) return absl::ErrnoToStatus(errno, "bind " + path);
  // Before listen(): nobody can connect while the mode is still the umask's.
  if (::chmod(path.c_str(), mode) != 0) return absl::ErrnoToStatus(errno, "chmod " + path);
  if (::listen(listener->listener_.get(), SOMAXCONN) != 0) return absl::ErrnoToStatus(errno, "listen " + path);
  listener->wake_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!listener->wake_.valid()) return absl::ErrnoToStatus(errno, "eventfd");
  listener->thread_ = std::thread(&UnixListener::Run, listener.get());
  return listener;
}

void UnixListener::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  WakeAndJoin(wake_.get(), thread_);
  listener_.reset();
  ::unlink(path_.c_str());
}

void UnixListener::Run() {
  for (;;) {
    std::vector<struct pollfd> pfds = {{wake_.get(), POLLIN, 0}, {listener_.get(), POLLIN, 0}};
    int timeout_ms = -1;
    const auto now = std::chrono::steady_clock::now();
    for (const Pending& p : pending_) {
      pfds.push_back({p.fd.get(), POLLIN, 0});
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(p.deadline - now).count() + 1;
      timeout_ms = timeout_ms < 0 ? static_cast<int>(std::max<int64_t>(left, 0))
                                  : std::min(timeout_ms, static_cast<int>(std::max<int64_t>(left, 0)));
    }
    if (::poll(pfds.data(), pfds.size(), timeout_ms) < 0) {
      if (errno == EINTR) continue;
      WEIGHTD_LOG(ERROR) << "grpc socket: poll failed: " << std::strerror(errno);
      serving_ = false;
      return;
    }
    if (pfds[0].revents != 0) return;
    // Pending connections first (AcceptAll appends to pending_).
    std::vector<Pending> waiting;
    const auto after = std::chrono::steady_clock::now();
    for (size_t i = 0; i < pending_.size(); ++i) {
      Pending& p = pending_[i];
      if (pfds[i + 2].revents != 0 && Sniff(p)) continue;
      if (after >= p.deadline) {
        // Silent: gRPC's handshake timeout applies. Part of the magic and no more: closed.
        if (p.matched == 0) grpc::AddInsecureChannelFromFd(server_, p.fd.release());
        continue;
      }
      waiting.push_back(std::move(p));
    }
    pending_ = std::move(waiting);
    if (pfds[1].revents != 0) AcceptAll();
  }
}

void UnixListener::AcceptAll() {
  for (;;) {
    UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!fd.valid()) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        WEIGHTD_LOG(WARNING) << "grpc socket: accept failed: " << std::strerror(errno);
        ::usleep(100000);  // out of descriptors: back off rather than spin
      }
      return;
    }
    struct ucred cred = {};
    socklen_t len = sizeof(cred);
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) continue;
    if (std::find(allowed_uids_.begin(), allowed_uids_.end(), cred.uid) == allowed_uids_.end()) {
      LogEvent(LogLevel::kWarning, "connection_refused",
               {{"socket", path_}, {"uid", static_cast<int64_t>(cred.uid)},
                {"pid", static_cast<int64_t>(cred.pid)}});
      continue;
    }
    if (!raw_push_) {
      grpc::AddInsecureChannelFromFd(server_, fd.release());
      continue;
    }
    Pending pending{std::move(fd), std::chrono::steady_clock::now() + kSniffTimeout};
    if (!Sniff(pending)) pending_.push_back(std::move(pending));
  }
}

bool UnixListener::Sniff(Pending& pending) {
  char bytes[kRawPushMagic.size()];
  if (pending.matched == 0) {
    const ssize_t n = ::recv(pending.fd.get(), bytes, 1, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return false;
    if (n <= 0) return true;  // closed before a byte, or failed: dropped
    if (bytes[0] != kRawPushMagic[0]) {
      grpc::AddInsecureChannelFromFd(server_, pending.fd.release());
      return true;
    }
  }
  const ssize_t n = ::recv(pending.fd.get(), bytes, kRawPushMagic.size() - pending.matched, 0);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return false;
  if (n <= 0) return true;
  const std::string_view got(bytes, static_cast<size_t>(n));
  if (got != kRawPushMagic.substr(pending.matched, got.size())) {
    LogEvent(LogLevel::kWarning, "connection_refused", {{"socket", path_}, {"reason", "neither gRPC nor a raw push"}});
    return true;  // closed
  }
  pending.matched += got.size();
  if (pending.matched < kRawPushMagic.size()) return false;  // the rest of the magic is yet to come
  raw_push_(std::move(pending.fd));
  return true;
}

}  // namespace weightd
