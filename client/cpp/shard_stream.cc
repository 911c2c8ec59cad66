#include "client/cpp/shard_stream.h"

#include "client/cpp/channel.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "grpcpp/support/sync_stream.h"

namespace weightd::client {
namespace {

constexpr char kMethod[] = "/weightd.v1.Loader/PushShards";

// The tag and length of ShardChunk's `data` (field 2, length-delimited).
grpc::Slice DataFieldPrefix(size_t length) {
  uint8_t prefix[11] = {0x12};
  size_t n = 1;
  for (uint64_t v = length;; v >>= 7) {
    prefix[n++] = static_cast<uint8_t>((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
    if (v < 0x80) break;
  }
  return grpc::Slice(prefix, n);
}

}  // namespace

ShardStream::ShardStream(std::shared_ptr<grpc::Channel> channel, const std::string& model_id,
                         const std::string& shard_file, uint64_t size) {
  context_.AddMetadata("weightd-model-id", model_id);
  context_.AddMetadata("weightd-shard-file", shard_file);
  const grpc::internal::RpcMethod method(kMethod, grpc::internal::RpcMethod::CLIENT_STREAMING, channel);
  writer_.reset(grpc::internal::ClientWriterFactory<grpc::ByteBuffer>::Create(channel.get(), method, &context_,
                                                                              &summary_));
  v1::ShardChunk first;
  first.mutable_open()->set_model_id(model_id);
  first.mutable_open()->set_shard_file(shard_file);
  first.mutable_open()->set_size(size);
  const std::string bytes = first.SerializeAsString();
  grpc::Slice slice(bytes.data(), bytes.size());
  open_ = writer_->Write(grpc::ByteBuffer(&slice, 1));
}

ShardStream::~ShardStream() = default;

bool ShardStream::Send(size_t capacity, const std::function<size_t(uint8_t*, size_t)>& fill) {
  if (!open_) return false;
  grpc::Slice data(capacity);
  const size_t n = fill(const_cast<uint8_t*>(data.begin()), capacity);
  if (n == 0) return false;
  const grpc::Slice message[2] = {DataFieldPrefix(n), data.sub(0, n)};
  open_ = writer_->Write(grpc::ByteBuffer(message, 2));
  return open_;
}

absl::StatusOr<v1::PushSummary> ShardStream::Finish() {
  writer_->WritesDone();
  absl::Status status = FromGrpc(writer_->Finish());
  if (!status.ok()) return status;
  v1::PushSummary summary;
  grpc::ProtoBufferReader reader(&summary_);
  if (!summary.ParseFromZeroCopyStream(&reader)) return absl::InternalError("malformed PushSummary from the daemon");
  return summary;
}

}  // namespace weightd::client
