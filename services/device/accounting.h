// weightd's own view of device memory: per device, the bytes it holds (used),
// their high-water mark since start (peak) and the limit it may use. Planner
// admission, backends and metrics all read this one ledger. Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace weightd {

struct DeviceUsage {
  uint64_t limit = 0;
  uint64_t used = 0;
  uint64_t peak = 0;
};

class DeviceAccounting {
 public:
  // Called (outside the lock) after every change with the device's new usage.
  using Observer = std::function<void(int device, const DeviceUsage& usage)>;

  explicit DeviceAccounting(std::vector<uint64_t> limits);

  int device_count() const { return static_cast<int>(limits_.size()); }
  DeviceUsage usage(int device) const;
  void set_observer(Observer observer);

  // Reserves bytes[d] on every device d at once, or nothing: RESOURCE_EXHAUSTED
  // naming needed and free bytes of every device that falls short.
  absl::Status Reserve(const std::vector<uint64_t>& bytes, const std::string& what);
  void Release(const std::vector<uint64_t>& bytes);

 private:
  void Notify(const std::vector<uint64_t>& bytes);

  mutable std::mutex mu_;
  std::vector<uint64_t> limits_;
  std::vector<DeviceUsage> usage_;
  Observer observer_;
};

}  // namespace weightd
