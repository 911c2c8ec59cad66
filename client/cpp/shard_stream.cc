#include "client/cpp/shard_stream.h"

#include "client/cpp/chunk_wire.h"
#include "client/cpp/raw_shard_stream.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "grpcpp/support/sync_stream.h"

namespace weightd::client {
namespace {

constexpr char kMethod[] = "/weightd.v1.Loader/PushShards";

}  // namespace

absl::StatusOr<std::unique_ptr<ShardStream>> OpenShardStream(const std::string& address, const TlsOptions& tls,
                                                             const std::string& model_id,
                                                             const std::string& shard_file, uint64_t size,
                                                             PushTransport transport) {
  if (transport == PushTransport::kAuto && IsUnixAddress(address)) {
    absl::StatusOr<std::unique_ptr<RawShardStream>> raw = RawShardStream::Open(address, model_id, shard_file, size);
    if (raw.ok()) return std::unique_ptr<ShardStream>(std::move(*raw));
    if (raw.status().code() != absl::StatusCode::kUnimplemented) return raw.status();
  }
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeChannel(address, tls, /*own_connection=*/true);
  if (!channel.ok()) return channel.status();
  return std::unique_ptr<ShardStream>(std::make_unique<GrpcShardStream>(*std::move(channel), model_id, shard_file,
                                                                        size));
}

GrpcShardStream::GrpcShardStream(std::shared_ptr<grpc::Channel> channel, const std::string& model_id,
                                 const std::string& shard_file, uint64_t size) {
  context_.AddMetadata("weightd-model-id", model_id);
  context_.AddMetadata("weightd-shard-file", shard_file);
  const grpc::internal::RpcMethod method(kMethod, grpc::internal::RpcMethod::CLIENT_STREAMING, channel);
  writer_.reset(grpc::internal::ClientWriterFactory<grpc::ByteBuffer>::Create(channel.get(), method, &context_,
                                                                              &summary_));
  const std::string bytes = OpenMessage(model_id, shard_file, size);
  grpc::Slice slice(bytes.data(), bytes.size());
  open_ = writer_->Write(grpc::ByteBuffer(&slice, 1));
}

GrpcShardStream::~GrpcShardStream() = default;

bool GrpcShardStream::Send(size_t capacity, const std::function<size_t(uint8_t*, size_t)>& fill) {
  if (!open_) return false;
  grpc::Slice data(capacity);
  const size_t n = fill(const_cast<uint8_t*>(data.begin()), capacity);
  if (n == 0) return false;
  const std::string prefix = DataFieldPrefix(n);
  const grpc::Slice message[2] = {grpc::Slice(prefix.data(), prefix.size()), data.sub(0, n)};
  open_ = writer_->Write(grpc::ByteBuffer(message, 2));
  return open_;
}

absl::StatusOr<v1::PushSummary> GrpcShardStream::Finish() {
  writer_->WritesDone();
  absl::Status status = FromGrpc(writer_->Finish());
  if (!status.ok()) return status;
  v1::PushSummary summary;
  grpc::ProtoBufferReader reader(&summary_);
  if (!summary.ParseFromZeroCopyStream(&reader)) return absl::InternalError("malformed PushSummary from the daemon");
  return summary;
}

}  // namespace weightd::client
