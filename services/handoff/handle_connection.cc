#include "services/handoff/handle_connection.h"

#include <errno.h>
#include <sys/socket.h>

#include <string>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/fd_passing.h"
#include "base/log.h"

namespace weightd::handoff {

HandleConnection::HandleConnection(UniqueFd fd, const PeerCredentials& peer, const ConnectionTimeouts& timeouts,
                                   absl::Time now, AttachHandler* handler, std::atomic<size_t>* active_leases)
    : fd_(std::move(fd)),
      peer_(peer),
      timeouts_(timeouts),
      handler_(handler),
      active_leases_(active_leases),
      request_deadline_(now + timeouts.request),
      deadline_(request_deadline_) {}

bool HandleConnection::Refuse(const absl::Status& status, absl::Time now) {
  return Refusal(status, AfterAnswer::kAwaitClose, now);
}

bool HandleConnection::Step(short revents, absl::Time now) {
  if (!open()) return false;
  if (revents != 0) {
    bool keep = false;
    switch (phase_) {
      case Phase::kRequest: keep = ReadRequest(now); break;
      case Phase::kAnswer: keep = SendAnswer(); break;
      case Phase::kLeased: keep = LeasedReadable(now); break;
      case Phase::kAwaitClose: keep = false; break;  // its request (or its close) has come
    }
    if (!keep) return false;
  }
  if (now < deadline_) return true;
  if (phase_ == Phase::kAnswer) {
    WEIGHTD_LOG(WARNING) << "handle server: dropping pid " << peer_.pid << ": its socket took "
                         << answer_->sent_bytes() << " of its answer's " << answer_->total_bytes()
                         << " bytes in " << absl::FormatDuration(timeouts_.answer);
  }
  return false;
}

void HandleConnection::Close() {
  EndLease();
  answer_.reset();
  fd_.reset();
}

void HandleConnection::EndLease() {
  if (delivered_) {
    delivered_ = false;
    active_leases_->fetch_sub(1, std::memory_order_relaxed);
  }
  if (on_lease_end_) std::exchange(on_lease_end_, nullptr)();
}

// Reads what has arrived of the request and answers it once it is whole.
bool HandleConnection::ReadRequest(absl::Time now) {
  std::string buf(request_.wanted(), '\0');
  // Exactly up to the frame's end: a byte past it would be a second request.
  ssize_t n = ::recv(fd_.get(), buf.data(), buf.size(), MSG_DONTWAIT);
  if (n == 0) return false;  // closed before a whole request
  if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
  absl::Status appended = request_.Append(std::string_view(buf.data(), static_cast<size_t>(n)));
  if (!appended.ok()) return Refusal(appended, AfterAnswer::kClose, now);
  if (!request_.complete()) return true;  // the rest follows (usually already queued: poll fires again)
  absl::StatusOr<v1::AttachRequest> request = request_.Parse();
  if (!request.ok()) return Refusal(request.status(), AfterAnswer::kClose, now);
  return Answer(*request, now);
}

// A refused grant's lease ends before its answer goes out, so a worker that reads
// the refusal finds nothing of it still counted.
bool HandleConnection::Answer(const v1::AttachRequest& request, absl::Time now) {
  AttachGrant grant = handler_->Attach(peer_, request);
  on_lease_end_ = std::move(grant.on_lease_end);
  if (grant.response.code() != 0) {
    EndLease();
    return Queue(grant.response.SerializeAsString(), {}, AfterAnswer::kClose, now);
  }
  std::string payload = grant.response.SerializeAsString();
  if (payload.size() > kMaxFrameBytes) {  // a rank of very many tensors: said, not a silent close
    EndLease();
    return Refusal(absl::ResourceExhaustedError(absl::StrCat(
                       "the manifest of model '", request.model_id(), "' rank ", request.rank(), " is ",
                       payload.size(), " bytes, over the handle socket's frame limit of ", kMaxFrameBytes,
                       " bytes (", grant.response.manifest().tensors_size(), " tensors)")),
                   AfterAnswer::kClose, now);
  }
  if (grant.fds.size() > kMaxFrameFds) {
    EndLease();
    return Refusal(absl::ResourceExhaustedError(absl::StrCat(
                       "model '", request.model_id(), "' rank ", request.rank(), " has ", grant.fds.size(),
                       " allocations, over the handle socket's limit of ", kMaxFrameFds, " descriptors")),
                   AfterAnswer::kClose, now);
  }
  return Queue(std::move(payload), std::move(grant.fds), AfterAnswer::kLease, now);
}

bool HandleConnection::Refusal(const absl::Status& status, AfterAnswer after, absl::Time now) {
  v1::AttachResponse response;
  response.set_code(static_cast<int>(status.code()));
  response.set_message(std::string(status.message()));
  return Queue(response.SerializeAsString(), {}, after, now);
}

bool HandleConnection::Queue(std::string payload, std::vector<UniqueFd> fds, AfterAnswer after,
                             absl::Time now) {
  absl::StatusOr<OutgoingFrame> frame = OutgoingFrame::Make(std::move(payload), std::move(fds));
  if (!frame.ok()) {  // Answer checks the limits first: not reached
    WEIGHTD_LOG(ERROR) << "handle server: cannot answer pid " << peer_.pid << ": " << frame.status();
    return false;
  }
  answer_.emplace(std::move(*frame));
  after_answer_ = after;
  phase_ = Phase::kAnswer;
  deadline_ = now + timeouts_.answer;
  return SendAnswer();  // most answers fit in the socket at once
}

bool HandleConnection::SendAnswer() {
  absl::Status sent = answer_->SendSome(fd_.get());
  if (!sent.ok()) {
    if (after_answer_ == AfterAnswer::kLease) {
      WEIGHTD_LOG(WARNING) << "handle server: cannot send lease to pid " << peer_.pid << ": " << sent;
    }
    return false;
  }
  if (!answer_->done()) return true;  // POLLOUT brings the next piece
  answer_.reset();  // the lease's descriptors: the worker holds its own now
  switch (after_answer_) {
    case AfterAnswer::kLease:
      phase_ = Phase::kLeased;
      deadline_ = absl::InfiniteFuture();
      delivered_ = true;
      active_leases_->fetch_add(1, std::memory_order_relaxed);
      return true;
    case AfterAnswer::kAwaitClose:
      phase_ = Phase::kAwaitClose;
      deadline_ = request_deadline_;
      return true;
    case AfterAnswer::kClose:
      return false;
  }
  return false;
}

// Any byte on a leased connection is a second request: refused, and the lease ends
// when the refusal is out. Its close (recv of 0) ends the lease at once.
bool HandleConnection::LeasedReadable(absl::Time now) {
  char byte;
  ssize_t n = ::recv(fd_.get(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return true;
  if (n > 0) {
    return Refusal(absl::FailedPreconditionError(
                       "this connection already holds a lease; open a new connection per lease"),
                   AfterAnswer::kClose, now);
  }
  return false;
}

}  // namespace weightd::handoff
