#include "services/load/fused_scale_gate.h"

#include <algorithm>

namespace weightd {

FusedScaleGate::FusedScaleGate(const LoadPlan& plan) : groups_(plan.fused_scales.size()) {
  for (size_t i = 0; i < groups_.size(); ++i) groups_[i].expected = plan.fused_scales[i].parts;
}

FusedScaleGate::~FusedScaleGate() { Clear(); }

std::optional<FusedScaleGate::Ready> FusedScaleGate::Add(int index, Part part) {
  std::unique_lock<std::mutex> lock(mu_);
  if (cleared_ || index < 0 || static_cast<size_t>(index) >= groups_.size()) {
    lock.unlock();
    if (part.release) part.release();
    return std::nullopt;
  }
  Group& group = groups_[index];
  group.parts.push_back(std::move(part));
  if (group.parts.size() < group.expected) return std::nullopt;
  Ready ready;
  ready.parts = std::move(group.parts);
  group.parts.clear();
  ready.amax = ready.parts[0].amax;
  for (const Part& p : ready.parts) {
    for (size_t r = 0; r < ready.amax.size() && r < p.amax.size(); ++r) ready.amax[r] = std::max(ready.amax[r], p.amax[r]);
  }
  return ready;
}

void FusedScaleGate::Clear() {
  std::vector<Part> freed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    cleared_ = true;
    for (Group& group : groups_) {
      for (Part& p : group.parts) freed.push_back(std::move(p));
      group.parts.clear();
    }
  }
  for (Part& p : freed) {
    p.bytes = GatherBuffer();
    if (p.release) p.release();
  }
}

}  // namespace weightd
