#include "base/outgoing_frame.h"

#include <utility>

#include "base/fd_passing.h"
#include "base/status_macros.h"

namespace weightd {

absl::StatusOr<OutgoingFrame> OutgoingFrame::Make(std::string payload, std::vector<UniqueFd> fds) {
  WEIGHTD_RETURN_IF_ERROR(CheckFrameLimits(payload.size(), fds.size()));
  return OutgoingFrame(std::move(payload), std::move(fds));
}

OutgoingFrame::OutgoingFrame(std::string payload, std::vector<UniqueFd> fds)
    : payload_(std::move(payload)), fds_(std::move(fds)) {
  for (const UniqueFd& fd : fds_) fd_numbers_.push_back(fd.get());
}

absl::Status OutgoingFrame::SendSome(int socket_fd) {
  while (!done()) {
    WEIGHTD_ASSIGN_OR_RETURN(size_t n, SendFramePart(socket_fd, payload_, fd_numbers_, sent_, /*dont_wait=*/true));
    if (n == 0) break;  // the socket is full
    sent_ += n;
  }
  return absl::OkStatus();
}

}  // namespace weightd
