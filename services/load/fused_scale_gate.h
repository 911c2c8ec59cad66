// Holds the parts of a fused output that share one per-tensor scale (layout
// vllm's qkv_proj and gate_up_proj, LoadPlan::fused_scales) until every part's
// amax is known: the scale is that of the largest, so no part can be quantized
// before the last one arrives. A part's source bytes wait on the host meanwhile
// (a layer's q/k/v or gate/up at most, per fused output in flight), outside
// --host-memory-limit (ShardWriter::PlaceGathered says why); a part's optional
// `release` runs when they are freed (placed, or the load failed). Thread-safe.
#pragma once

#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/gather_buffer.h"
#include "services/load/planner.h"
#include "services/safetensors/header.h"

namespace weightd {

class FusedScaleGate {
 public:
  struct Part {
    const TensorTask* task = nullptr;
    const safetensors::TensorHeader* header = nullptr;
    GatherBuffer bytes;         // the whole source tensor
    std::vector<float> amax;    // per rank
    std::function<void()> release;
  };
  struct Ready {
    std::vector<Part> parts;
    std::vector<float> amax;  // per rank: the maximum over the parts
  };

  explicit FusedScaleGate(const LoadPlan& plan);
  ~FusedScaleGate();

  // Adds a part of fused scale `index`; when it is the last one, returns every
  // part (the caller places them, then lets them go), else nullopt.
  std::optional<Ready> Add(int index, Part part);
  // Frees every part held (a failed load). Later Adds are freed at once.
  void Clear();

 private:
  struct Group {
    std::vector<Part> parts;
    size_t expected = 0;
  };
  std::mutex mu_;
  std::vector<Group> groups_;  // guarded by mu_
  bool cleared_ = false;       // guarded by mu_
};

}  // namespace weightd
