#include "services/load/arena.h"

#include "absl/strings/str_cat.h"

namespace weightd {
namespace {

std::vector<uint64_t> OnDevice(int device, uint64_t bytes) {
  std::vector<uint64_t> v(static_cast<size_t>(device) + 1, 0);
  v[device] = bytes;
  return v;
}

}  // namespace

absl::StatusOr<std::shared_ptr<Arena>> Arena::Create(DeviceBackend& backend,
                                                     DeviceAccounting& accounting, int device,
                                                     uint64_t bytes, const std::string& label) {
  auto allocation = backend.Allocate(device, bytes, label);
  if (!allocation.ok()) {
    accounting.Release(OnDevice(device, bytes));
    return absl::Status(allocation.status().code(),
                        absl::StrCat("allocating ", bytes, " bytes on device ", device, " for ",
                                     label, ": ", allocation.status().message()));
  }
  if ((*allocation)->size() != bytes) {
    // The planner rounds to the backend's granularity, so this is a bug, not bad input.
    uint64_t got = (*allocation)->size();
    accounting.Release(OnDevice(device, bytes));
    return absl::InternalError(absl::StrCat("backend allocated ", got, " bytes, planned ", bytes));
  }
  return std::shared_ptr<Arena>(new Arena(accounting, std::move(*allocation), bytes));
}

Arena::Arena(DeviceAccounting& accounting, std::unique_ptr<DeviceAllocation> allocation,
             uint64_t reserved)
    : accounting_(accounting), allocation_(std::move(allocation)), reserved_(reserved) {}

Arena::~Arena() {
  int device = allocation_->device();
  allocation_.reset();
  accounting_.Release(OnDevice(device, reserved_));
}

}  // namespace weightd
