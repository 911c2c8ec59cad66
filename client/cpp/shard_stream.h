// One PushShards stream, sending raw messages: the caller writes each message's
// data straight into the buffer gRPC sends, so a pushed byte is copied once on the
// client (from its file or generator), not again into and out of a protobuf
// string. The messages are ShardChunk's wire format (weightd/v1/loader.proto);
// the first carries `open`, and the stream names the shard in its metadata too
// (services/server/push_framing.h). Not thread-safe: one thread per stream.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "weightd/v1/loader.pb.h"

namespace weightd::client {

class ShardStream {
 public:
  // Opens the stream and sends `open` for shard `shard_file` of `size` bytes.
  ShardStream(std::shared_ptr<grpc::Channel> channel, const std::string& model_id, const std::string& shard_file,
              uint64_t size);
  ~ShardStream();

  // Sends one message of at most `capacity` data bytes: `fill(buffer, capacity)`
  // writes them and returns how many (0: none, nothing is sent). Returns false
  // when the stream is broken (Finish tells why) or `fill` wrote none.
  bool Send(size_t capacity, const std::function<size_t(uint8_t*, size_t)>& fill);
  // Ends the stream abnormally (the daemon fails the shard's load).
  void Cancel() { context_.TryCancel(); }
  // Half-closes and waits for the daemon's answer.
  absl::StatusOr<v1::PushSummary> Finish();

 private:
  grpc::ClientContext context_;
  grpc::ByteBuffer summary_;
  std::unique_ptr<grpc::ClientWriter<grpc::ByteBuffer>> writer_;
  bool open_ = false;
};

}  // namespace weightd::client
