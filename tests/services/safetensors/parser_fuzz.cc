// libFuzzer target for ShardParser. Input: two control bytes, then one shard.
//   byte 0: bits 0-1 pick the chunking (whole, 1 byte, 7 bytes, pseudo-random sizes),
//           bit 2 passes the shard's real size as declared_size, bit 3 uses small
//           ParseLimits so that the limits are reachable.
//   byte 1: seed of the pseudo-random chunk sizes.
// The sink checks the TensorSink contract and aborts on any violation, as does an
// error code other than INVALID_ARGUMENT (malformed) or DATA_LOSS (truncated: at Finish,
// or at the header when declared_size is shorter than the header describes).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string_view>

#include "absl/status/status.h"
#include "services/safetensors/parser.h"

namespace {

using weightd::safetensors::ParseLimits;
using weightd::safetensors::ShardParser;
using weightd::safetensors::TensorSink;

[[noreturn]] void Violation(const char* what) {
  std::fprintf(stderr, "contract violation: %s\n", what);
  std::abort();
}

class CheckingSink : public TensorSink {
 public:
  explicit CheckingSink(const ShardParser& parser) : parser_(parser) {}

  absl::Status OnTensorBytes(size_t index, uint64_t offset, std::string_view bytes) override {
    if (!parser_.header_complete()) Violation("bytes before the header is complete");
    const auto& tensors = parser_.header().tensors;
    if (index != next_) Violation("bytes for a tensor other than the next incomplete one");
    if (index >= tensors.size()) Violation("tensor index out of range");
    if (bytes.empty()) Violation("empty byte call");
    if (offset != delivered_) Violation("gap or repeat inside a tensor");
    if (bytes.size() > tensors[index].size() - offset) Violation("bytes beyond the tensor's end");
    delivered_ += bytes.size();
    total_ += bytes.size();
    return absl::OkStatus();
  }

  absl::Status OnTensorComplete(size_t index) override {
    const auto& tensors = parser_.header().tensors;
    if (index != next_) Violation("completion out of order");
    if (index >= tensors.size()) Violation("completed index out of range");
    if (delivered_ != tensors[index].size()) Violation("completed before every byte arrived");
    ++next_;
    delivered_ = 0;
    return absl::OkStatus();
  }

  size_t completed() const { return next_; }
  uint64_t total() const { return total_; }

 private:
  const ShardParser& parser_;
  size_t next_ = 0;
  uint64_t delivered_ = 0;
  uint64_t total_ = 0;
};

void CheckCode(const absl::Status& status, bool finish) {
  if (status.code() == absl::StatusCode::kInvalidArgument) return;
  if (finish && status.code() == absl::StatusCode::kDataLoss) return;
  std::fprintf(stderr, "unexpected status: %s\n", status.ToString().c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t control = data[0];
  uint32_t rng = data[1] * 2654435761u + 1;
  std::string_view file(reinterpret_cast<const char*>(data) + 2, size - 2);

  ParseLimits limits;
  if (control & 8) {
    limits.max_header_bytes = 512;
    limits.max_tensors = 4;
    limits.max_name_bytes = 8;
    limits.max_rank = 3;
  }
  std::optional<uint64_t> declared;
  if (control & 4) declared = file.size();
  ShardParser parser("fuzz", limits, declared);
  CheckingSink sink(parser);

  auto next_size = [&]() -> size_t {
    switch (control & 3) {
      case 0: return file.size();
      case 1: return 1;
      case 2: return 7;
      default:
        rng = rng * 1103515245u + 12345u;
        return 1 + (rng >> 16) % 64;
    }
  };

  uint64_t fed = 0;
  while (!file.empty()) {
    std::string_view chunk = file.substr(0, next_size());
    file.remove_prefix(chunk.size());
    if (!parser.header_complete()) {
      absl::StatusOr<size_t> used = parser.FeedHeader(chunk);
      if (!used.ok()) {
        // DATA_LOSS here: declared_size is shorter than what the header describes.
        CheckCode(used.status(), declared.has_value());
        return 0;
      }
      if (*used > chunk.size()) Violation("FeedHeader used more than it was given");
      fed += *used;
      chunk.remove_prefix(*used);
      if (!parser.header_complete()) {
        if (!chunk.empty()) Violation("FeedHeader left bytes while the header is incomplete");
        continue;
      }
    }
    const uint64_t before = sink.total();
    absl::Status status = parser.FeedData(chunk, sink);
    if (!status.ok()) {
      CheckCode(status, false);
      if (sink.total() != before) Violation("bytes delivered from a refused chunk");
      return 0;
    }
    if (sink.total() != before + chunk.size()) Violation("FeedData did not deliver its whole chunk");
    fed += chunk.size();
  }
  if (parser.position() != fed) Violation("position() disagrees with the bytes fed");
  absl::Status status = parser.Finish(sink);
  if (!status.ok()) {
    CheckCode(status, true);
    return 0;
  }
  const auto& header = parser.header();
  if (sink.completed() != header.tensors.size()) Violation("a tensor was never completed");
  if (sink.total() != header.data_size) Violation("data bytes delivered differ from data_size");
  if (parser.position() != header.file_size()) Violation("position() differs from file_size()");
  if (declared && *declared != header.file_size()) Violation("accepted a file of the wrong declared size");
  return 0;
}
