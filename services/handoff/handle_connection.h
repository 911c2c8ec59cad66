// One connection of the handle socket, through its life: it reads one
// AttachRequest, asks the AttachHandler, sends the answer (the manifest and the
// lease's descriptors) in pieces as the socket takes them, then holds the lease
// until the worker closes. Nothing here blocks: the poll thread that drives every
// connection waits on none of them, so a worker that does not read its answer
// delays no other attach. It is dropped once its answer is unread past
// `ConnectionTimeouts::answer`, and its lease (granted, not yet delivered) ends.
// Thread-safety: none; the handle server's poll thread drives every connection.
#pragma once

#include <poll.h>

#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "base/outgoing_frame.h"
#include "base/unique_fd.h"
#include "services/handoff/attach_handler.h"
#include "services/handoff/request_frame.h"
#include "weightd/v1/handoff.pb.h"

namespace weightd::handoff {

struct ConnectionTimeouts {
  absl::Duration request = absl::Seconds(10);  // from accept to a whole request
  absl::Duration answer = absl::Seconds(10);   // from a ready answer to its last byte in the socket
};

class HandleConnection {
 public:
  // `fd` must be non-blocking. `handler` and `active_leases` outlive the connection;
  // `active_leases` counts the connections whose lease has been delivered.
  HandleConnection(UniqueFd fd, const PeerCredentials& peer, const ConnectionTimeouts& timeouts,
                   absl::Time now, AttachHandler* handler, std::atomic<size_t>* active_leases);
  ~HandleConnection() { Close(); }
  HandleConnection(const HandleConnection&) = delete;
  HandleConnection& operator=(const HandleConnection&) = delete;

  // For a peer that may not attach: answers `status` at once and reads nothing it
  // sends; the connection closes once its request (or its close) arrives, or at
  // the request deadline. False: close it now.
  bool Refuse(const absl::Status& status, absl::Time now);

  int fd() const { return fd_.get(); }
  bool open() const { return fd_.valid(); }
  short poll_events() const { return phase_ == Phase::kAnswer ? POLLOUT : POLLIN; }
  // When Step must run even without events; InfiniteFuture for a delivered lease.
  absl::Time deadline() const { return deadline_; }

  // Serves poll's `revents` (0: none), then checks the deadline. False: close it.
  bool Step(short revents, absl::Time now);

  // Ends the lease, if one was granted, before closing the descriptor, so that a
  // worker waiting for the close knows its lease no longer counts. Idempotent.
  void Close();

 private:
  enum class Phase {
    kRequest,      // reading the request
    kAnswer,       // sending the answer
    kLeased,       // the lease is delivered; any byte or the close ends it
    kAwaitClose,   // refused at accept; closes on the request, its close, or the deadline
  };
  enum class AfterAnswer { kLease, kClose, kAwaitClose };

  // Each returns false when the connection is to be closed.
  bool ReadRequest(absl::Time now);
  bool Answer(const v1::AttachRequest& request, absl::Time now);
  bool Refusal(const absl::Status& status, AfterAnswer after, absl::Time now);
  bool Queue(std::string payload, std::vector<UniqueFd> fds, AfterAnswer after, absl::Time now);
  bool SendAnswer();
  bool LeasedReadable(absl::Time now);
  void EndLease();  // once: uncounts a delivered lease and calls on_lease_end_

  UniqueFd fd_;
  PeerCredentials peer_;
  ConnectionTimeouts timeouts_;
  AttachHandler* handler_;
  std::atomic<size_t>* active_leases_;
  Phase phase_ = Phase::kRequest;
  absl::Time request_deadline_;
  absl::Time deadline_;
  RequestFrameDecoder request_;
  std::optional<OutgoingFrame> answer_;
  AfterAnswer after_answer_ = AfterAnswer::kClose;
  std::function<void()> on_lease_end_;  // held from the grant until Close
  bool delivered_ = false;              // counted in active_leases_
};

}  // namespace weightd::handoff
