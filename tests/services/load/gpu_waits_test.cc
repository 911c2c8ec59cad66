// --staging-blocking-waits: its values, and which threads sleep under auto.
#include "services/device/gpu_waits.h"

#include <thread>

#include "gtest/gtest.h"

namespace weightd {
namespace {

TEST(GpuWaitsTest, ParsesTheFlagsValues) {
  EXPECT_EQ(*ParseGpuWaits("auto"), GpuWaits::kAuto);
  EXPECT_EQ(*ParseGpuWaits("true"), GpuWaits::kSleep);
  EXPECT_EQ(*ParseGpuWaits("false"), GpuWaits::kSpin);
  absl::StatusOr<GpuWaits> bad = ParseGpuWaits("yes");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(), "--staging-blocking-waits must be auto, true or false, not 'yes'");
}

TEST(GpuWaitsTest, UnderAutoOnlyAMarkedThreadSleeps) {
  EXPECT_TRUE(SleepsOnGpuWaits(GpuWaits::kSleep));
  EXPECT_FALSE(SleepsOnGpuWaits(GpuWaits::kSpin));
  EXPECT_FALSE(SleepsOnGpuWaits(GpuWaits::kAuto));
  {
    SleepOnGpuWaits outer;
    EXPECT_TRUE(SleepsOnGpuWaits(GpuWaits::kAuto));
    EXPECT_FALSE(SleepsOnGpuWaits(GpuWaits::kSpin));  // false spins everywhere
    {
      SleepOnGpuWaits inner;
      EXPECT_TRUE(SleepsOnGpuWaits(GpuWaits::kAuto));
    }
    EXPECT_TRUE(SleepsOnGpuWaits(GpuWaits::kAuto));  // the inner scope restores, not clears
    bool other_thread = true;
    std::thread([&] { other_thread = SleepsOnGpuWaits(GpuWaits::kAuto); }).join();
    EXPECT_FALSE(other_thread);  // the mark is the thread's own
  }
  EXPECT_FALSE(SleepsOnGpuWaits(GpuWaits::kAuto));
}

}  // namespace
}  // namespace weightd
