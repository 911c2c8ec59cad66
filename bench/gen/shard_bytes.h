// The bytes of one synthetic safetensors shard, produced in order on demand, so a
// shard can be written to a file or streamed into PushShards from memory with the
// same bytes. Memory: the header plus one fast-fill table. Not thread-safe; one
// source per shard, sources of different shards may run concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "bench/gen/tensor_fill.h"
#include "bench/gen/write_checkpoint.h"

namespace weightd::bench {

class ShardByteSource {
 public:
  // `plan` must be PlanCheckpoint(options) and outlive the source.
  ShardByteSource(const GenOptions& options, const CheckpointPlan& plan, int shard);

  // Total bytes of the shard file: the 8-byte length, the header, the data.
  uint64_t size() const { return prefix_.size() + data_bytes_; }
  uint64_t position() const { return position_; }

  // Fills `out` with the next bytes of the shard and returns how many (less than
  // out.size() only at the end of the shard; 0 once it is done).
  size_t Read(std::span<uint8_t> out);

 private:
  void FillTensorBytes(const PlannedTensor& tensor, uint64_t byte_offset, std::span<uint8_t> out);

  const GenOptions& options_;
  std::string prefix_;
  std::vector<const PlannedTensor*> tensors_;  // this shard's, in data order
  uint64_t data_bytes_ = 0;
  uint64_t position_ = 0;
  size_t tensor_ = 0;  // index into tensors_ of the one position_ is in
  std::unique_ptr<FastTensorFill> fast_;  // for tensors_[tensor_] when options_.fast_fill
  size_t fast_for_ = SIZE_MAX;
};

// The safetensors prefix of a shard: 8-byte little-endian length, then the JSON
// header padded with spaces so that the data section starts 8-byte aligned.
std::string SafetensorsPrefix(const CheckpointPlan& plan, int shard);

}  // namespace weightd::bench
