// Someone waiting on a load: a LoadModel call. The registry sends progress at
// most every 100 ms and exactly one OnFinished. Implementations must not block.
#pragma once

#include "absl/status/statusor.h"
#include "weightd/v1/loader.pb.h"

namespace weightd {

class LoadWatcher {
 public:
  virtual ~LoadWatcher() = default;
  virtual void OnProgress(const v1::LoadEvent& event) = 0;
  virtual void OnFinished(const absl::StatusOr<v1::Manifest>& manifest) = 0;
};

}  // namespace weightd
