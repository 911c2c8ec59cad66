// Receives the data section of one shard from the parser and hands each tensor
// to the load's TensorPlacer: stored tensors whose rank slices are byte ranges
// of the source are written through as their bytes arrive; other tensors are
// gathered on the host first (quantized ones need whole tiles' amax), then
// placed on every rank.
// Not thread-safe: one writer per shard stream. Distinct writers of one load
// run concurrently; they write disjoint regions of the arenas.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "kernels/quantize.h"
#include "services/load/planner.h"
#include "services/load/progress.h"
#include "services/load/tensor_placer.h"
#include "services/safetensors/parser.h"

namespace weightd {

class ShardWriter : public safetensors::TensorSink {
 public:
  // `placer` holds the arenas: they live while any writer of the load does.
  ShardWriter(std::string file, const safetensors::ShardHeader& header,
              const std::vector<TensorTask>& tasks, std::shared_ptr<TensorPlacer> placer,
              kernels::NonFinitePolicy policy, LoadProgress& progress,
              const std::atomic<bool>& aborted);

  absl::Status OnTensorBytes(size_t index, uint64_t offset, std::string_view bytes) override;
  absl::Status OnTensorComplete(size_t index) override;

 private:
  absl::Status Quantize(size_t index);
  std::string Where(size_t index) const;

  std::string file_;
  const safetensors::ShardHeader& header_;
  const std::vector<TensorTask>& tasks_;
  std::shared_ptr<TensorPlacer> placer_;
  kernels::NonFinitePolicy policy_;
  LoadProgress& progress_;
  const std::atomic<bool>& aborted_;
  std::vector<bool> streams_;  // by tensor index: written as bytes arrive
  std::string staging_;        // source bytes of a tensor being gathered
};

}  // namespace weightd
