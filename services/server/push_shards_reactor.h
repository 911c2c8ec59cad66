// Receives one shard file of a push load. Reads one message at a time; each is
// parsed and written on the executor, and only then is the next read started,
// so gRPC flow control bounds what the daemon buffers. After the header the
// stream pauses until the load has every header and its memory (the plan).
// Any error in an expected shard fails the whole load; a stream for a shard the
// load does not expect fails alone. Thread-safe by construction: at most one
// read or task of this stream is outstanding at a time.
#pragma once

#include <grpcpp/grpcpp.h>
#include <openssl/evp.h>

#include <memory>
#include <optional>
#include <string>

#include "services/executor.h"
#include "services/registry/registry.h"
#include "services/safetensors/parser.h"
#include "services/sources/source_hooks.h"
#include "weightd/v1/loader.pb.h"

namespace weightd {

class PushShardsReactor : public grpc::ServerReadReactor<v1::ShardChunk> {
 public:
  PushShardsReactor(Registry& registry, Executor& executor, SourceHooks hooks,
                    safetensors::ParseLimits limits, v1::PushSummary* summary);
  ~PushShardsReactor() override;

  void OnReadDone(bool ok) override;
  void OnDone() override;

 private:
  // Runs on the executor. Returns true when the next read may start.
  absl::StatusOr<bool> Consume();
  absl::Status Open(const v1::ShardOpen& open);
  absl::Status FeedData(std::string_view bytes);
  absl::Status EndOfStream();
  void OnResume(absl::Status status);
  void Fail(const absl::Status& status);
  void Succeed();

  Registry& registry_;
  Executor& executor_;
  SourceHooks hooks_;
  const safetensors::ParseLimits limits_;
  v1::PushSummary* summary_;

  v1::ShardChunk chunk_;
  std::string file_;
  std::string expected_sha256_;
  EVP_MD_CTX* sha_ = nullptr;
  std::shared_ptr<LoadJob> job_;
  std::unique_ptr<safetensors::ShardParser> parser_;
  ShardWriter* writer_ = nullptr;  // owned by the job; valid until OnShardDone
  std::string leftover_;           // data bytes that arrived with the end of the header
  bool finished_ = false;
};

}  // namespace weightd
