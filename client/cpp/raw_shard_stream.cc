#include "client/cpp/raw_shard_stream.h"

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/fd_passing.h"
#include "base/raw_push_wire.h"
#include "client/cpp/chunk_wire.h"

namespace weightd::client {
namespace {

// How long the daemon may take to accept (it answers at once; a daemon without
// raw pushes answers HTTP/2 or closes).
constexpr int kGreetingTimeoutSeconds = 10;

absl::StatusOr<UniqueFd> ConnectUnix(const std::string& address) {
  absl::string_view name = address;
  bool abstract = absl::ConsumePrefix(&name, "unix-abstract:");
  if (!abstract && absl::ConsumePrefix(&name, "unix:")) absl::ConsumePrefix(&name, "//");
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  const size_t offset = abstract ? 1 : 0;  // an abstract name starts with a NUL byte
  if (name.empty() || name.size() + offset >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("bad Unix socket address '", address, "'"));
  }
  name.copy(addr.sun_path + offset, name.size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return absl::UnavailableError(absl::StrCat("socket: ", std::strerror(errno)));
  const socklen_t len = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + offset + name.size());
  if (::connect(fd.get(), reinterpret_cast<const struct sockaddr*>(&addr), len) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot connect to ", address, ": ", std::strerror(errno)));
  }
  return fd;
}

bool SendAll(int fd, const void* bytes, size_t n) {
  const char* p = static_cast<const char*>(bytes);
  while (n > 0) {
    const ssize_t sent = ::send(fd, p, n, MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent <= 0) return false;
    p += sent;
    n -= static_cast<size_t>(sent);
  }
  return true;
}

// The bytes read before the end or an error.
size_t ReadAll(int fd, void* into, size_t n) {
  size_t got = 0;
  while (got < n) {
    const ssize_t r = ::read(fd, static_cast<char*>(into) + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += static_cast<size_t>(r);
  }
  return got;
}

void SetReceiveTimeout(int fd, int seconds) {
  const struct timeval timeout = {seconds, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
}

}  // namespace

absl::StatusOr<std::unique_ptr<RawShardStream>> RawShardStream::Open(const std::string& address,
                                                                     const std::string& model_id,
                                                                     const std::string& shard_file, uint64_t size) {
  absl::StatusOr<UniqueFd> fd = ConnectUnix(address);
  if (!fd.ok()) return fd.status();
  char greeting[kRawPushMagic.size()];
  SetReceiveTimeout(fd->get(), kGreetingTimeoutSeconds);
  if (!SendAll(fd->get(), kRawPushMagic.data(), kRawPushMagic.size()) ||
      ReadAll(fd->get(), greeting, sizeof(greeting)) != sizeof(greeting) ||
      std::string_view(greeting, sizeof(greeting)) != kRawPushMagic) {
    return absl::UnimplementedError(absl::StrCat("the daemon at ", address, " takes no raw push connections"));
  }
  SetReceiveTimeout(fd->get(), 0);  // the answer comes when the shard is placed
  std::unique_ptr<RawShardStream> stream(new RawShardStream(*std::move(fd)));
  // A failure shows in Finish.
  if (!SendFrame(stream->fd_.get(), OpenMessage(model_id, shard_file, size)).ok()) stream->broken_ = true;
  return stream;
}

bool RawShardStream::SendBuffered(size_t start, size_t bytes) {
  if (broken_) return false;
  if (!SendAll(fd_.get(), buffer_.data() + start, bytes)) broken_ = true;
  return !broken_;
}

bool RawShardStream::Send(size_t capacity, const std::function<size_t(uint8_t*, size_t)>& fill) {
  if (broken_ || cancelled_) return false;
  // The data lands after room for the longest prefix; the frame's length and the
  // field's tag and length go right before it, so the frame is sent with one call.
  constexpr size_t kRoom = kRawPushLengthBytes + kMaxDataFieldPrefix;
  if (buffer_.size() < kRoom + capacity) buffer_.resize(kRoom + capacity);
  const size_t n = fill(buffer_.data() + kRoom, capacity);
  if (n == 0) return false;
  const std::string field = DataFieldPrefix(n);
  std::string length;
  AppendLength(static_cast<uint32_t>(field.size() + n), length);
  const size_t start = kRoom - field.size() - length.size();
  std::memcpy(buffer_.data() + start, length.data(), length.size());
  std::memcpy(buffer_.data() + start + length.size(), field.data(), field.size());
  return SendBuffered(start, kRoom - start + n);
}

void RawShardStream::Cancel() {
  cancelled_ = true;
  ::shutdown(fd_.get(), SHUT_RDWR);  // the daemon sees the connection end without the end frame
}

absl::StatusOr<v1::PushSummary> RawShardStream::Finish() {
  if (cancelled_) return absl::CancelledError("the push was cancelled by the client");
  const unsigned char end[kRawPushLengthBytes] = {0, 0, 0, 0};
  if (!broken_) SendAll(fd_.get(), end, sizeof(end));  // a daemon that stopped reading answers all the same
  std::string body;
  std::vector<UniqueFd> no_fds;
  const absl::Status received = RecvFrame(fd_.get(), absl::InfiniteDuration(), &body, &no_fds);
  if (!received.ok()) {
    return absl::UnavailableError(
        absl::StrCat("weightd closed the raw push connection without a whole answer: ", received.message()));
  }
  absl::StatusOr<RawPushReply> reply = DecodeRawPushReply(body);
  if (!reply.ok()) return absl::InternalError(absl::StrCat("malformed raw push answer: ", reply.status().message()));
  if (reply->code != 0) return absl::Status(static_cast<absl::StatusCode>(reply->code), reply->message);
  v1::PushSummary summary;
  if (!summary.ParseFromString(reply->summary)) return absl::InternalError("malformed PushSummary from the daemon");
  return summary;
}

}  // namespace weightd::client
