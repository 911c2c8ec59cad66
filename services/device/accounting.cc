#include "services/device/accounting.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace weightd {

DeviceAccounting::DeviceAccounting(std::vector<uint64_t> limits)
    : limits_(std::move(limits)), usage_(limits_.size()) {
  for (size_t d = 0; d < limits_.size(); ++d) usage_[d].limit = limits_[d];
}

DeviceUsage DeviceAccounting::usage(int device) const {
  std::lock_guard<std::mutex> lock(mu_);
  return usage_.at(device);
}

void DeviceAccounting::set_observer(Observer observer) {
  std::lock_guard<std::mutex> lock(mu_);
  observer_ = std::move(observer);
}

absl::Status DeviceAccounting::Reserve(const std::vector<uint64_t>& bytes, const std::string& what) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (bytes.size() > usage_.size()) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": needs ", bytes.size(), " devices, ",
                                                     usage_.size(), " exist"));
    }
    std::vector<std::string> short_devices;
    for (size_t d = 0; d < bytes.size(); ++d) {
      uint64_t free = usage_[d].limit - usage_[d].used;
      if (bytes[d] > free) {
        short_devices.push_back(
            absl::StrCat("device ", d, " needs ", bytes[d], " bytes, ", free, " free"));
      }
    }
    if (!short_devices.empty()) {
      return absl::ResourceExhaustedError(
          absl::StrCat(what, " does not fit: ", absl::StrJoin(short_devices, "; ")));
    }
    for (size_t d = 0; d < bytes.size(); ++d) {
      usage_[d].used += bytes[d];
      if (usage_[d].used > usage_[d].peak) usage_[d].peak = usage_[d].used;
    }
  }
  Notify(bytes);
  return absl::OkStatus();
}

void DeviceAccounting::Release(const std::vector<uint64_t>& bytes) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t d = 0; d < bytes.size() && d < usage_.size(); ++d) usage_[d].used -= bytes[d];
  }
  Notify(bytes);
}

void DeviceAccounting::Notify(const std::vector<uint64_t>& bytes) {
  Observer observer;
  std::vector<DeviceUsage> snapshot;
  {
    std::lock_guard<std::mutex> lock(mu_);
    observer = observer_;
    snapshot = usage_;
  }
  if (!observer) return;
  for (size_t d = 0; d < bytes.size() && d < snapshot.size(); ++d) {
    if (bytes[d] != 0) observer(static_cast<int>(d), snapshot[d]);
  }
}

}  // namespace weightd
