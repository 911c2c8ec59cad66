#include "base/fd_passing.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstring>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace weightd {
namespace {

constexpr size_t kHeaderBytes = 4;

absl::Status ErrnoStatus(const char* what, int err) {
  std::string message = absl::StrCat(what, ": ", strerror(err));
  if (err == EPIPE || err == ECONNRESET || err == ENOTCONN) return absl::UnavailableError(message);
  if (err == EAGAIN || err == EWOULDBLOCK) return absl::DeadlineExceededError(message);
  return absl::InternalError(message);
}

// Waits for `events` until `deadline`; false on timeout.
absl::StatusOr<bool> WaitFor(int fd, short events, absl::Time deadline) {
  for (;;) {
    int timeout_ms = -1;
    if (deadline != absl::InfiniteFuture()) {
      absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) return false;
      timeout_ms = static_cast<int>(absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))));
    }
    struct pollfd p = {fd, events, 0};
    int n = ::poll(&p, 1, timeout_ms);
    if (n > 0) return true;  // also on POLLHUP/POLLERR: the next call reports it
    if (n < 0 && errno != EINTR) return ErrnoStatus("poll", errno);
  }
}

void TakeFds(struct msghdr* msg, std::vector<UniqueFd>* out) {
  for (struct cmsghdr* c = CMSG_FIRSTHDR(msg); c != nullptr; c = CMSG_NXTHDR(msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const unsigned char* data = CMSG_DATA(c);
    for (size_t i = 0; i < n; ++i) {
      int fd;
      std::memcpy(&fd, data + i * sizeof(int), sizeof(int));
      out->emplace_back(fd);
    }
  }
}

// Reads exactly `size` bytes into `dst`, collecting any descriptors. `started`
// says whether an earlier read of this frame already took bytes.
absl::Status RecvExact(int fd, char* dst, size_t size, absl::Time deadline, bool started,
                       std::vector<UniqueFd>* fds) {
  alignas(struct cmsghdr) char control[CMSG_SPACE(kMaxFrameFds * sizeof(int))];
  size_t done = 0;
  while (done < size) {
    struct iovec iov = {dst + done, size - done};
    struct msghdr msg = {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n = ::recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return ErrnoStatus("recvmsg", errno);
      auto ready = WaitFor(fd, POLLIN, deadline);
      if (!ready.ok()) return ready.status();
      if (!*ready) return absl::DeadlineExceededError("timed out waiting for a frame");
      continue;
    }
    TakeFds(&msg, fds);
    if (msg.msg_flags & MSG_CTRUNC) {
      fds->clear();
      return absl::InvalidArgumentError(
          absl::StrCat("frame carried more than ", kMaxFrameFds, " file descriptors"));
    }
    if (n == 0) {
      if (!started && done == 0) return absl::UnavailableError("peer closed the connection");
      return absl::DataLossError(absl::StrCat("peer closed the connection mid-frame (", done, " of ",
                                              size, " bytes)"));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckFrameLimits(size_t payload_bytes, size_t fd_count) {
  if (payload_bytes > kMaxFrameBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("frame of ", payload_bytes, " bytes exceeds the limit of ", kMaxFrameBytes));
  }
  if (fd_count > kMaxFrameFds) {
    return absl::InvalidArgumentError(
        absl::StrCat(fd_count, " file descriptors exceed the limit of ", kMaxFrameFds, " per frame"));
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> SendFramePart(int socket_fd, std::string_view payload, const std::vector<int>& fds,
                                     size_t sent, bool dont_wait) {
  uint32_t len = static_cast<uint32_t>(payload.size());
  unsigned char header[kHeaderBytes] = {static_cast<unsigned char>(len), static_cast<unsigned char>(len >> 8),
                                        static_cast<unsigned char>(len >> 16),
                                        static_cast<unsigned char>(len >> 24)};
  alignas(struct cmsghdr) char control[CMSG_SPACE(kMaxFrameFds * sizeof(int))];
  struct iovec iov[2];
  int iovcnt = 0;
  if (sent < kHeaderBytes) iov[iovcnt++] = {header + sent, kHeaderBytes - sent};
  size_t body_off = sent < kHeaderBytes ? 0 : sent - kHeaderBytes;
  if (body_off < payload.size()) {
    iov[iovcnt++] = {const_cast<char*>(payload.data()) + body_off, payload.size() - body_off};
  }
  if (iovcnt == 0) return 0;
  struct msghdr msg = {};
  msg.msg_iov = iov;
  msg.msg_iovlen = iovcnt;
  if (sent == 0 && !fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(fds.size() * sizeof(int));
    struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
    std::memcpy(CMSG_DATA(c), fds.data(), fds.size() * sizeof(int));
  }
  for (;;) {
    ssize_t n = ::sendmsg(socket_fd, &msg, MSG_NOSIGNAL | (dont_wait ? MSG_DONTWAIT : 0));
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    return ErrnoStatus("sendmsg", errno);
  }
}

absl::Status SendFrame(int socket_fd, std::string_view payload, const std::vector<int>& fds) {
  WEIGHTD_RETURN_IF_ERROR(CheckFrameLimits(payload.size(), fds.size()));
  const bool nonblocking = (::fcntl(socket_fd, F_GETFL) & O_NONBLOCK) != 0;
  size_t total = kHeaderBytes + payload.size();
  size_t sent = 0;
  while (sent < total) {
    absl::StatusOr<size_t> n = SendFramePart(socket_fd, payload, fds, sent, /*dont_wait=*/false);
    if (!n.ok()) return n.status();
    if (*n == 0) {  // the socket is full
      if (!nonblocking) return ErrnoStatus("sendmsg", EAGAIN);  // SO_SNDTIMEO ran out
      auto ready = WaitFor(socket_fd, POLLOUT, absl::InfiniteFuture());
      if (!ready.ok()) return ready.status();
      continue;
    }
    sent += *n;
  }
  return absl::OkStatus();
}

absl::Status RecvFrame(int socket_fd, absl::Duration timeout, std::string* payload,
                       std::vector<UniqueFd>* fds) {
  absl::Time deadline = timeout == absl::InfiniteDuration() ? absl::InfiniteFuture() : absl::Now() + timeout;
  payload->clear();
  fds->clear();
  unsigned char header[kHeaderBytes];
  absl::Status status =
      RecvExact(socket_fd, reinterpret_cast<char*>(header), kHeaderBytes, deadline, false, fds);
  if (status.ok()) {
    uint32_t len = uint32_t{header[0]} | uint32_t{header[1]} << 8 | uint32_t{header[2]} << 16 |
                   uint32_t{header[3]} << 24;
    if (len > kMaxFrameBytes) {
      status = absl::InvalidArgumentError(
          absl::StrCat("frame length ", len, " exceeds the limit of ", kMaxFrameBytes, " bytes"));
    } else {
      payload->resize(len);
      status = RecvExact(socket_fd, payload->data(), len, deadline, true, fds);
    }
  }
  if (!status.ok()) {
    payload->clear();
    fds->clear();
  }
  return status;
}

}  // namespace weightd
