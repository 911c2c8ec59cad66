#include "services/server/raw_push_call.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cerrno>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/fd_passing.h"
#include "base/log.h"
#include "base/raw_push_wire.h"
#include "services/server/push_frame_reader.h"

namespace weightd {
namespace {

// A reply or the magic: small, into a socket buffer the client drains; the
// timeout only bounds a client that stopped reading with a full buffer.
constexpr int kSendTimeoutSeconds = 10;

bool SendAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

bool RawPushCalls::Add(const void* call, int fd) {
  std::lock_guard<std::mutex> lock(mu_);
  if (shut_down_) return false;
  if (live_.size() >= max_live_) {
    if (!full_logged_) {
      full_logged_ = true;
      LogEvent(LogLevel::kWarning, "raw_push_connections_full",
               {{"limit", static_cast<uint64_t>(max_live_)},
                {"effect", "further raw push connections are closed ungreeted; their clients push over gRPC"}});
    }
    return false;
  }
  live_[call] = fd;
  return true;
}

void RawPushCalls::ForgetSocket(const void* call) {
  std::lock_guard<std::mutex> lock(mu_);
  live_[call] = -1;
}

void RawPushCalls::Remove(const void* call) {
  std::lock_guard<std::mutex> lock(mu_);
  live_.erase(call);
  if (live_.size() < max_live_) full_logged_ = false;
  removed_.notify_all();
}

size_t RawPushCalls::Shutdown(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  shut_down_ = true;
  for (const auto& [call, fd] : live_) {
    if (fd >= 0) ::shutdown(fd, SHUT_RD);  // the reply still goes out
  }
  removed_.wait_until(lock, deadline, [this] { return live_.empty(); });
  return live_.size();
}

RawPushCall::~RawPushCall() = default;

void RawPushCall::Start(UniqueFd fd, uint32_t max_frame_bytes, std::chrono::milliseconds first_frame_timeout,
                        RawPushCalls& calls) {
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags >= 0) ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
  const struct timeval timeout = {kSendTimeoutSeconds, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  if (!calls.Add(this, fd.get())) {
    // Full or shutting down: closed unanswered, and the client falls back to
    // gRPC (which, shutting down, refuses it too). Nothing has happened yet but
    // the first StartRead.
    fd.reset();
    OnDone();
    return;
  }
  fd_ = std::move(fd);
  calls_ = &calls;
  std::thread thread(&RawPushCall::Run, this, max_frame_bytes, first_frame_timeout);
  pthread_setname_np(thread.native_handle(), "wd-rawpush");  // per-thread CPU in push_bench.sh
  thread.detach();
}

void RawPushCall::StartRead(grpc::ByteBuffer* message) {
  std::lock_guard<std::mutex> lock(mu_);
  target_ = message;
  wake_.notify_all();
}

void RawPushCall::Finish(grpc::Status status) {
  std::lock_guard<std::mutex> lock(mu_);
  finished_ = true;
  status_ = std::move(status);
  // A read in progress ends now; the connection's thread closes the socket only
  // after it sees finished_, under mu_, so the descriptor is still ours here.
  if (target_ != nullptr) ::shutdown(fd_.get(), SHUT_RD);
  wake_.notify_all();
}

absl::Status RawPushCall::cut() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cut_;
}

void RawPushCall::Run(uint32_t max_frame_bytes, std::chrono::milliseconds first_frame_timeout) {
  PushFrameReader reader(fd_.get(), max_frame_bytes);
  const bool greeted = SendAll(fd_.get(), kRawPushMagic);
  reader.SetReceiveTimeout(first_frame_timeout);
  bool first = true;
  for (;;) {
    grpc::ByteBuffer* target = nullptr;
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [this] { return target_ != nullptr || finished_; });
      if (finished_) break;
      target = target_;
    }
    bool ok = false;
    absl::Status error;  // OK with !ok: the end frame
    {
      absl::StatusOr<std::optional<grpc::Slice>> frame =
          greeted ? reader.Next() : absl::UnavailableError("raw push: the client went away before the greeting");
      ok = frame.ok() && frame->has_value();
      if (ok) *target = grpc::ByteBuffer(&**frame, 1);
      if (!frame.ok()) error = frame.status();
      if (first && absl::IsDeadlineExceeded(error)) {
        error = absl::DeadlineExceededError(absl::StrCat(
            error.message(), ", before the first frame was whole (--push-idle-timeout-seconds)"));
      }
      if (ok && first) {
        first = false;
        reader.SetReceiveTimeout(std::chrono::milliseconds(0));  // the load's watchdog from here on
      }
    }  // This thread's reference to the frame goes before the reactor sees it, so the
       // last one, whose release returns the buffer to the pool, is always the
       // reactor's, after its reads (ThreadSanitizer cannot see gRPC's refcounts).
    {
      std::lock_guard<std::mutex> lock(mu_);
      target_ = nullptr;
      if (!ok && !finished_) cut_ = error;
    }
    OnReadDone(ok);
  }
  bool cut_short = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    cut_short = target_ != nullptr;
    target_ = nullptr;
  }
  if (cut_short) OnReadDone(false);  // a read Finish cut short, as gRPC reports it
  Reply();
  RawPushCalls* calls = calls_;
  const void* key = this;
  calls->ForgetSocket(key);
  {
    std::lock_guard<std::mutex> lock(mu_);
    fd_.reset();
  }
  OnDone();  // deletes this
  calls->Remove(key);
}

void RawPushCall::Reply() {
  RawPushReply reply;
  {
    std::lock_guard<std::mutex> lock(mu_);
    reply.code = static_cast<int>(status_.error_code());
    reply.message = status_.error_message();
  }
  if (reply.code == 0) {
    std::vector<grpc::Slice> slices;
    if (response_.Dump(&slices).ok()) {
      for (const grpc::Slice& slice : slices) reply.summary.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
    }
  }
  // The handle socket's frame format (base/fd_passing.h). A client gone away
  // misses the answer, as on gRPC.
  SendFrame(fd_.get(), EncodeRawPushReply(reply)).IgnoreError();
}

}  // namespace weightd
