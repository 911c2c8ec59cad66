// libFuzzer target for the PushShards message stream: the input is a sequence of
// serialized ShardChunk messages, each preceded by a 2-byte little-endian length.
// Each is decoded as gRPC would, checked by CheckShardChunk, and its data fed to a
// ShardParser the way the reactor feeds it (header phase, then data; declared size
// from `open`). Nothing may crash, and every refusal must be INVALID_ARGUMENT
// (malformed) or DATA_LOSS (shorter than declared or than the header says).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string_view>

#include "services/safetensors/parser.h"
#include "services/server/push_framing.h"

namespace {

class CountingSink : public weightd::safetensors::TensorSink {
 public:
  absl::Status OnTensorBytes(size_t, uint64_t, std::string_view bytes) override {
    total += bytes.size();
    return absl::OkStatus();
  }
  absl::Status OnTensorComplete(size_t) override { return absl::OkStatus(); }
  uint64_t total = 0;
};

void Expect(const absl::Status& status, bool data_loss_allowed) {
  if (status.ok() || status.code() == absl::StatusCode::kInvalidArgument) return;
  if (data_loss_allowed && status.code() == absl::StatusCode::kDataLoss) return;
  std::fprintf(stderr, "unexpected status: %s\n", status.ToString().c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::unique_ptr<weightd::safetensors::ShardParser> parser;
  std::string file;
  CountingSink sink;
  weightd::safetensors::ParseLimits limits;
  limits.max_header_bytes = 1 << 16;
  while (in.size() >= 2) {
    size_t len = static_cast<uint8_t>(in[0]) | static_cast<size_t>(static_cast<uint8_t>(in[1])) << 8;
    in.remove_prefix(2);
    std::string_view message = in.substr(0, len);
    in.remove_prefix(message.size());
    weightd::v1::ShardChunk chunk;
    if (!chunk.ParseFromArray(message.data(), static_cast<int>(message.size()))) return 0;  // gRPC drops the call
    absl::Status checked = weightd::CheckShardChunk(chunk, parser == nullptr, file);
    Expect(checked, false);
    if (!checked.ok()) return 0;
    if (parser == nullptr) {
      file = chunk.open().shard_file();
      std::optional<uint64_t> declared;
      if (chunk.open().size() > 0) declared = chunk.open().size();
      parser = std::make_unique<weightd::safetensors::ShardParser>(file, limits, declared);
    }
    std::string_view bytes = chunk.data();
    if (!parser->header_complete()) {
      absl::StatusOr<size_t> used = parser->FeedHeader(bytes);
      Expect(used.status(), true);
      if (!used.ok()) return 0;
      if (*used > bytes.size()) std::abort();
      bytes.remove_prefix(*used);
      if (!parser->header_complete()) continue;
    }
    absl::Status fed = parser->FeedData(bytes, sink);
    Expect(fed, false);
    if (!fed.ok()) return 0;
  }
  if (parser != nullptr) {
    absl::Status finished = parser->Finish(sink);
    Expect(finished, true);
    if (finished.ok() && sink.total != parser->header().data_size) std::abort();
  }
  return 0;
}
