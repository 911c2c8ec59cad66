#include "tests/e2e/push_stream.h"

#include <cstring>

#include "client/cpp/channel.h"

namespace weightd::testing {

std::string OneTensorShard(const std::string& name, int floats) {
  std::string header = "{\"" + name + "\":{\"dtype\":\"F32\",\"shape\":[" + std::to_string(floats) +
                       "],\"data_offsets\":[0," + std::to_string(4 * floats) + "]}}";
  std::string data(static_cast<size_t>(4 * floats), '\0');
  const float one = 1.0f;
  for (int i = 0; i < floats; ++i) std::memcpy(&data[static_cast<size_t>(4 * i)], &one, 4);
  return Shard(header, data);
}

PushLoad::PushLoad(const DaemonProcess& daemon, const std::string& model, const std::vector<std::string>& shards)
    : model_(model), stub_(v1::Loader::NewStub(client::MakeChannel(daemon.grpc_address(), true))) {
  v1::LoadModelRequest request;
  request.set_model_id(model);
  for (const std::string& s : shards) request.mutable_source()->mutable_push()->add_shard_files(s);
  // Bounds every test that waits on a load: a hang fails instead of blocking CI.
  context_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  reader_ = stub_->LoadModel(&context_, request);
  v1::LoadEvent first;
  reader_->Read(&first);
}

grpc::Status PushLoad::Finish() {
  v1::LoadEvent event;
  while (reader_->Read(&event)) {
  }
  return reader_->Finish();
}

ShardStream::ShardStream(PushLoad& load, const std::string& file, uint64_t size, const std::string& sha256) {
  open_.set_model_id(load.model());
  open_.set_shard_file(file);
  open_.set_size(size);
  open_.set_sha256(sha256);
  context_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  context_.AddMetadata("weightd-model-id", load.model());  // services/server/push_framing.h
  context_.AddMetadata("weightd-shard-file", file);
  writer_ = load.stub().PushShards(&context_, &summary_);
}

bool ShardStream::Write(const std::string& bytes) {
  v1::ShardChunk chunk;
  if (!opened_) *chunk.mutable_open() = open_;
  opened_ = true;
  chunk.set_data(bytes);
  return writer_->Write(chunk);
}

grpc::Status ShardStream::Close() {
  writer_->WritesDone();
  return writer_->Finish();
}

void ShardStream::Cancel() { context_.TryCancel(); }

grpc::Status PushWhole(PushLoad& load, const std::string& name, const std::string& file) {
  ShardStream stream(load, name, file.size());
  stream.Write(file);
  return stream.Close();
}

}  // namespace weightd::testing
