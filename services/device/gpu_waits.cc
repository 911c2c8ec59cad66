#include "services/device/gpu_waits.h"

#include "absl/strings/str_cat.h"

namespace weightd {
namespace {

thread_local bool sleeping = false;

}  // namespace

absl::StatusOr<GpuWaits> ParseGpuWaits(const std::string& value) {
  if (value == "true") return GpuWaits::kSleep;
  if (value == "false") return GpuWaits::kSpin;
  if (value == "auto") return GpuWaits::kAuto;
  return absl::InvalidArgumentError(
      absl::StrCat("--staging-blocking-waits must be auto, true or false, not '", value, "'"));
}

SleepOnGpuWaits::SleepOnGpuWaits() : before_(sleeping) { sleeping = true; }

SleepOnGpuWaits::~SleepOnGpuWaits() { sleeping = before_; }

bool SleepsOnGpuWaits(GpuWaits mode) {
  return mode == GpuWaits::kSleep || (mode == GpuWaits::kAuto && sleeping);
}

}  // namespace weightd
