// Length-prefixed frames on a Unix stream socket, with file descriptors passed
// alongside (SCM_RIGHTS). A frame is a 4-byte little-endian length followed by
// that many bytes; descriptors ride on the frame's first byte. This is the wire
// format of the handle socket (proto/weightd/v1/handoff.proto).
// Thread-safety: stateless functions; a socket must not be used for sending (or
// for receiving) by two threads at once, or frames interleave.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/unique_fd.h"

namespace weightd {

inline constexpr size_t kMaxFrameBytes = size_t{16} << 20;
inline constexpr size_t kMaxFrameFds = 250;  // below the kernel's SCM_MAX_FD (253)

// Sends one frame; `fds` are borrowed (the kernel duplicates them into the
// peer). Blocks until the whole frame is written. On a blocking socket with
// SO_SNDTIMEO, a send that times out is DEADLINE_EXCEEDED; a closed peer is
// UNAVAILABLE (never SIGPIPE).
absl::Status SendFrame(int socket_fd, std::string_view payload, const std::vector<int>& fds = {});

// INVALID_ARGUMENT for a payload over kMaxFrameBytes or more than kMaxFrameFds
// descriptors: what SendFrame refuses before sending anything.
absl::Status CheckFrameLimits(size_t payload_bytes, size_t fd_count);

// One sendmsg of a frame from byte `sent` on (the 4-byte length counts), for
// callers that send a frame in pieces (OutgoingFrame); `fds` go with byte 0,
// so only a call with `sent == 0` carries them. Returns how many bytes the
// socket took: 0 when it is full (EAGAIN). `dont_wait` adds MSG_DONTWAIT, so a
// blocking socket does not block either. The limits are the caller's to check.
absl::StatusOr<size_t> SendFramePart(int socket_fd, std::string_view payload, const std::vector<int>& fds,
                                     size_t sent, bool dont_wait);

// Receives exactly one frame, never reading into the next. `timeout` bounds the
// whole frame (absl::InfiniteDuration() waits forever). Received descriptors are
// close-on-exec. Errors: UNAVAILABLE peer closed before any byte, DATA_LOSS closed
// mid-frame, DEADLINE_EXCEEDED, INVALID_ARGUMENT length over kMaxFrameBytes or
// descriptors truncated by the kernel (then none are returned). After an error the
// stream position is unknown: close the socket.
absl::Status RecvFrame(int socket_fd, absl::Duration timeout, std::string* payload,
                       std::vector<UniqueFd>* fds);

}  // namespace weightd
