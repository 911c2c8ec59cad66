// Incremental safetensors parser: takes one shard as a stream of chunks of any
// size (a push stream, file reads, a peer's stream), validates the header before
// any tensor byte is accepted, then routes the data section to a TensorSink in
// file order. Every byte is bounds-checked against the validated header.
// Not thread-safe: one parser per shard stream.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "services/safetensors/header.h"

namespace weightd::safetensors {

// Receives the data section of one shard, in file order.
class TensorSink {
 public:
  virtual ~TensorSink() = default;
  // Bytes [offset, offset + bytes.size()) of tensor `index` (an index into
  // ShardHeader::tensors). Calls for one tensor arrive in order, without gaps.
  virtual absl::Status OnTensorBytes(size_t index, uint64_t offset, std::string_view bytes) = 0;
  // Every byte of tensor `index` has been delivered (also called, once, for
  // zero-size tensors). Tensors complete in index order.
  virtual absl::Status OnTensorComplete(size_t index) = 0;
};

class ShardParser {
 public:
  // declared_size: the file size when known (path source: fstat; push: the size
  // the client declared). shard_name is used only in messages.
  ShardParser(std::string shard_name, ParseLimits limits, std::optional<uint64_t> declared_size);

  // Header phase: consumes bytes up to the end of the header and no further and
  // returns how many it consumed (the rest of `bytes` belongs to the data phase).
  // Once the header is complete it is validated, and against declared_size when
  // known (a shorter file is DATA_LOSS, a longer one INVALID_ARGUMENT). Returns 0 once the header is complete.
  absl::StatusOr<size_t> FeedHeader(std::string_view bytes);
  bool header_complete() const { return header_complete_; }
  // Only valid once header_complete().
  const ShardHeader& header() const { return header_; }

  // Data phase: routes bytes to the sink. Bytes beyond the data section are
  // INVALID_ARGUMENT; none of a chunk that holds any is delivered.
  absl::Status FeedData(std::string_view bytes, TensorSink& sink);

  // End of stream: completes trailing zero-size tensors. A stream that stopped
  // short of what the header declares (or inside the header) is DATA_LOSS.
  absl::Status Finish(TensorSink& sink);

  uint64_t position() const { return position_; }  // file bytes consumed so far
  uint64_t data_position() const { return data_position_; }  // data-section bytes consumed so far

 private:
  absl::Status Fail(absl::Status status);
  absl::Status CompleteHeader();
  // Completes every tensor whose last byte has been delivered, zero-size ones included.
  absl::Status CompleteDelivered(TensorSink& sink);
  std::string Where() const;

  std::string shard_name_;
  ParseLimits limits_;
  std::optional<uint64_t> declared_size_;

  // The first error is sticky: a stream that failed stays failed.
  absl::Status error_;
  bool finished_ = false;
  uint64_t position_ = 0;

  char length_prefix_[8] = {};
  uint64_t header_length_ = 0;  // N, valid once position_ >= 8
  std::string json_;            // the header as it arrives; released once parsed
  bool header_complete_ = false;
  ShardHeader header_;

  uint64_t data_position_ = 0;  // relative to the data section
  size_t next_tensor_ = 0;      // first tensor not yet completed
};

}  // namespace weightd::safetensors
