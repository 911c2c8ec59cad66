// Reads the frames of a raw push connection (base/raw_push_wire.h) from a
// blocking socket, one frame per Next(): its bytes land, with one read loop, in
// a buffer from the reader's pool, handed out as a gRPC slice (so PushMessage
// reads it in place, as it reads gRPC's own). A slice's buffer goes back to the
// pool when the last reference to the slice is dropped, on whichever thread;
// the pool outlives the reader while slices are out. Buffers are kept (and so
// stay resident: no page faults for the next frame) up to kPooledBuffers.
// Thread-safety: Next() from one thread at a time; slices may be dropped anywhere.
#pragma once

#include <grpcpp/support/slice.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>

#include "absl/status/statusor.h"

namespace weightd {

class PushFrameReader {
 public:
  // Buffers kept for reuse: the messages a push stream holds at most, and one more.
  static constexpr size_t kPooledBuffers = 4;

  // `fd` is borrowed. `max_frame_bytes`: the largest frame taken (the daemon's
  // gRPC message limit).
  PushFrameReader(int fd, uint32_t max_frame_bytes);
  ~PushFrameReader();
  PushFrameReader(const PushFrameReader&) = delete;
  PushFrameReader& operator=(const PushFrameReader&) = delete;

  // Each read waits at most `timeout` for bytes (SO_RCVTIMEO); 0: no limit (the default).
  void SetReceiveTimeout(std::chrono::milliseconds timeout);

  // The next frame's bytes; nullopt for the end frame (length 0). Errors, each
  // naming the connection's byte offset: DATA_LOSS when the connection ends
  // before the end frame (inside a frame or between two), RESOURCE_EXHAUSTED for
  // a length over the limit, DEADLINE_EXCEEDED when no byte came within the
  // receive timeout, UNAVAILABLE for a failed read.
  absl::StatusOr<std::optional<grpc::Slice>> Next();
  // Bytes read so far, length prefixes included.
  uint64_t offset() const { return offset_; }

 private:
  class Pool;
  // Reads exactly `n` bytes; the count read before the connection ended, or an error.
  absl::StatusOr<size_t> ReadFully(void* into, size_t n);

  const int fd_;
  const uint32_t max_frame_bytes_;
  std::shared_ptr<Pool> pool_;
  uint64_t offset_ = 0;
  std::chrono::milliseconds timeout_{0};
};

}  // namespace weightd
