// One shard pushed into a load (PushShards), sending raw messages: the caller
// writes each message's data straight into the buffer that is sent, so a pushed
// byte is copied once on the client (from its file or generator), not again into
// and out of a protobuf string. The messages are ShardChunk's wire format
// (weightd/v1/loader.proto); the first carries `open`.
//
// Two transports: gRPC (GrpcShardStream, any address; the stream names the shard
// in its metadata too, services/server/push_framing.h), and on a Unix socket the
// daemon's raw push connection (RawShardStream, base/raw_push_wire.h), which
// OpenShardStream prefers there. Not thread-safe: one thread per stream.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "client/cpp/channel.h"
#include "grpcpp/grpcpp.h"
#include "weightd/v1/loader.pb.h"

namespace weightd::client {

class ShardStream {
 public:
  virtual ~ShardStream() = default;
  // Sends one message of at most `capacity` data bytes: `fill(buffer, capacity)`
  // writes them and returns how many (0: none, nothing is sent). Returns false
  // when the stream is broken (Finish tells why) or `fill` wrote none.
  virtual bool Send(size_t capacity, const std::function<size_t(uint8_t*, size_t)>& fill) = 0;
  // Ends the stream abnormally (the daemon fails the shard's load).
  virtual void Cancel() = 0;
  // Ends the stream and waits for the daemon's answer.
  virtual absl::StatusOr<v1::PushSummary> Finish() = 0;
};

enum class PushTransport {
  kAuto,  // a raw push connection on a Unix socket (gRPC where the daemon takes none); gRPC elsewhere
  kGrpc,  // gRPC everywhere
};

// A stream for shard `shard_file` (`size` bytes) of `model_id` at `address`
// (channel.h's forms), its `open` sent. Errors as MakeChannel, and UNAVAILABLE
// for a Unix socket that cannot be connected to.
absl::StatusOr<std::unique_ptr<ShardStream>> OpenShardStream(const std::string& address, const TlsOptions& tls,
                                                             const std::string& model_id,
                                                             const std::string& shard_file, uint64_t size,
                                                             PushTransport transport = PushTransport::kAuto);

class GrpcShardStream : public ShardStream {
 public:
  // Opens the stream on `channel` (one with its own connection: parallel streams
  // on one HTTP/2 connection share its window) and sends `open`.
  GrpcShardStream(std::shared_ptr<grpc::Channel> channel, const std::string& model_id, const std::string& shard_file,
                  uint64_t size);
  ~GrpcShardStream() override;

  bool Send(size_t capacity, const std::function<size_t(uint8_t*, size_t)>& fill) override;
  void Cancel() override { context_.TryCancel(); }
  absl::StatusOr<v1::PushSummary> Finish() override;

 private:
  grpc::ClientContext context_;
  grpc::ByteBuffer summary_;
  std::unique_ptr<grpc::ClientWriter<grpc::ByteBuffer>> writer_;
  bool open_ = false;
};

}  // namespace weightd::client
