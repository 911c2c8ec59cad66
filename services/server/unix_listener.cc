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
#include "base/wake_fd.h"

namespace weightd {

UnixListener::UnixListener(std::string path, std::vector<uid_t> allowed_uids, grpc::Server* server)
    : path_(std::move(path)), allowed_uids_(std::move(allowed_uids)), server_(server) {}

UnixListener::~UnixListener() { Shutdown(); }

absl::StatusOr<std::unique_ptr<UnixListener>> UnixListener::Start(const std::string& path, mode_t mode,
                                                                  std::vector<uid_t> allowed_uids,
                                                                  grpc::Server* server) {
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
  std::unique_ptr<UnixListener> listener(new UnixListener(path, std::move(allowed_uids), server));
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
    struct pollfd pfds[2] = {{wake_.get(), POLLIN, 0}, {listener_.get(), POLLIN, 0}};
    if (::poll(pfds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      WEIGHTD_LOG(ERROR) << "grpc socket: poll failed: " << std::strerror(errno);
      serving_ = false;
      return;
    }
    if (pfds[0].revents != 0) return;
    for (;;) {
      UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
      if (!fd.valid()) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
          WEIGHTD_LOG(WARNING) << "grpc socket: accept failed: " << std::strerror(errno);
          ::usleep(100000);  // out of descriptors: back off rather than spin
        }
        break;
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
      grpc::AddInsecureChannelFromFd(server_, fd.release());
    }
  }
}

}  // namespace weightd
