// A frame (base/fd_passing.h's wire format) that a poll loop sends in pieces on
// a non-blocking socket, as the socket takes them, so that the loop never waits
// on one slow reader. The frame owns the descriptors it carries: they ride on
// its first byte, and are closed when the frame is destroyed, sent or not (the
// kernel holds its own references once they are sent).
// Thread-safety: none; one thread sends a frame.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/unique_fd.h"

namespace weightd {

class OutgoingFrame {
 public:
  // INVALID_ARGUMENT past kMaxFrameBytes or kMaxFrameFds.
  static absl::StatusOr<OutgoingFrame> Make(std::string payload, std::vector<UniqueFd> fds = {});

  // Sends what the socket takes now, never blocking. OK while bytes are left
  // (wait for POLLOUT, then call again); UNAVAILABLE once the peer has closed.
  absl::Status SendSome(int socket_fd);
  bool done() const { return sent_ == total_bytes(); }
  size_t sent_bytes() const { return sent_; }
  size_t total_bytes() const { return 4 + payload_.size(); }

 private:
  OutgoingFrame(std::string payload, std::vector<UniqueFd> fds);

  std::string payload_;
  std::vector<UniqueFd> fds_;
  std::vector<int> fd_numbers_;  // fds_, as sendmsg takes them
  size_t sent_ = 0;              // length prefix included
};

}  // namespace weightd
