// The device memory of one rank of a load. Its bytes are reserved in the
// accounting before it exists and released when the last owner drops it, so
// `used` always equals the memory actually held, whoever frees it (a finished
// unload, a failed load whose writers are still draining). Thread-safe.
#pragma once

#include <memory>

#include "services/device/accounting.h"
#include "services/device/device_backend.h"

namespace weightd {

class Arena {
 public:
  // `bytes` must already be reserved on `device`; on failure it is released.
  static absl::StatusOr<std::shared_ptr<Arena>> Create(DeviceBackend& backend,
                                                       DeviceAccounting& accounting, int device,
                                                       uint64_t bytes, const std::string& label);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  DeviceAllocation& allocation() { return *allocation_; }
  int device() const { return allocation_->device(); }
  uint64_t reserved_bytes() const { return reserved_; }

 private:
  Arena(DeviceAccounting& accounting, std::unique_ptr<DeviceAllocation> allocation, uint64_t reserved);

  DeviceAccounting& accounting_;
  std::unique_ptr<DeviceAllocation> allocation_;
  uint64_t reserved_;
};

}  // namespace weightd
