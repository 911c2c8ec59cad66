// A shard pushed on the daemon's raw push connection (base/raw_push_wire.h), on
// its Unix socket: each message is one length-prefixed frame written with one
// send, and the daemon reads it straight into a buffer of its own, past gRPC.
// Not thread-safe: one thread per stream.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/unique_fd.h"
#include "client/cpp/shard_stream.h"

namespace weightd::client {

class RawShardStream : public ShardStream {
 public:
  // Connects to the Unix socket of `address` (channel.h's forms), is accepted and
  // sends `open`. UNIMPLEMENTED when the daemon does not take raw pushes (an older
  // one, or one run with --raw-unix-push=false: use gRPC); UNAVAILABLE when the
  // socket cannot be connected to.
  static absl::StatusOr<std::unique_ptr<RawShardStream>> Open(const std::string& address, const std::string& model_id,
                                                              const std::string& shard_file, uint64_t size);

  bool Send(size_t capacity, const std::function<size_t(uint8_t*, size_t)>& fill) override;
  void Cancel() override;
  absl::StatusOr<v1::PushSummary> Finish() override;

 private:
  explicit RawShardStream(UniqueFd fd) : fd_(std::move(fd)) {}
  // `bytes` of buffer_ from `start` (a data frame, its length prefix included):
  // false once the daemon has stopped reading (Finish tells why).
  bool SendBuffered(size_t start, size_t bytes);

  UniqueFd fd_;
  std::vector<uint8_t> buffer_;  // the frame being sent; reused
  bool broken_ = false;
  bool cancelled_ = false;
};

}  // namespace weightd::client
