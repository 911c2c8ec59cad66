// Receives the data section of one shard from the parser and puts each tensor
// where the plan says: stored tensors are written through as their bytes
// arrive; quantized tensors are gathered on the host (their scales need whole
// tiles' amax), their scales computed there by the fast CPU kernels, then
// quantized into the arena by the backend and their scale tensor written.
// Thread-safe for distinct tensors: a stream delivers one tensor after another,
// while a path load may deliver several tensors of one shard from several threads
// at once (each tensor's bytes from one thread, in order). All writers of a load
// write disjoint regions of the arena.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/node_hash_map.h"

#include "kernels/quantize.h"
#include "services/load/arena.h"
#include "services/load/planner.h"
#include "services/load/progress.h"
#include "services/safetensors/parser.h"

namespace weightd {

class ShardWriter : public safetensors::TensorSink {
 public:
  ShardWriter(std::string file, const safetensors::ShardHeader& header,
              const std::vector<TensorTask>& tasks, const RankPlan& rank,
              std::shared_ptr<Arena> arena, DeviceBackend& backend,
              kernels::NonFinitePolicy policy, LoadProgress& progress,
              const std::atomic<bool>& aborted);

  absl::Status OnTensorBytes(size_t index, uint64_t offset, std::string_view bytes) override;
  absl::Status OnTensorComplete(size_t index) override;
  // A whole tensor at once (a path load's positioned read): quantized straight
  // from `bytes`, without gathering a copy.
  absl::Status OnWholeTensor(size_t index, std::string_view bytes);

 private:
  absl::Status Quantize(size_t index, std::string_view source);
  std::string Where(size_t index) const;

  std::string file_;
  const safetensors::ShardHeader& header_;
  const std::vector<TensorTask>& tasks_;
  const RankPlan& rank_;
  std::shared_ptr<Arena> arena_;
  DeviceBackend& backend_;
  kernels::NonFinitePolicy policy_;
  LoadProgress& progress_;
  const std::atomic<bool>& aborted_;
  std::mutex mu_;
  // Source bytes of the tensors being quantized, by tensor index; finished
  // buffers are kept for the next tensor, so their pages are touched once.
  absl::node_hash_map<size_t, std::string> staging_;  // pointer-stable: a thread appends without the lock
  std::vector<std::string> spare_;
};

}  // namespace weightd
