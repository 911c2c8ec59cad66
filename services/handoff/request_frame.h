// Decodes the one request frame of a handle-socket connection as its bytes
// arrive in pieces: a 4-byte little-endian length, then a serialized
// AttachRequest. Apart from the socket so that it can be fuzzed.
// Not thread-safe: one decoder per connection.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "weightd/v1/handoff.pb.h"

namespace weightd::handoff {

// An AttachRequest is a model id and a rank; anything near this is not one.
inline constexpr size_t kMaxRequestBytes = 64 << 10;
inline constexpr size_t kMaxModelIdBytes = 1024;

class RequestFrameDecoder {
 public:
  // How many more bytes the frame needs; never past its end (a byte after it
  // would belong to a second request). 0 once the frame is whole.
  size_t wanted() const;
  // Appends at most wanted() bytes. INVALID_ARGUMENT for a length over
  // kMaxRequestBytes (as soon as the 4 length bytes are in).
  absl::Status Append(std::string_view bytes);
  bool length_known() const { return buffer_.size() >= 4; }
  bool complete() const { return length_known() && wanted() == 0; }
  // Once complete(): the request, or INVALID_ARGUMENT (not an AttachRequest, an
  // empty or oversized model id).
  absl::StatusOr<v1::AttachRequest> Parse() const;

 private:
  uint32_t length() const;
  std::string buffer_;  // the frame so far, length prefix included
};

}  // namespace weightd::handoff
