// The staging ring's default size: slots of whole MiB between 4 and 8 MiB, all GPUs'
// rings together at most 2/3 of the last-level cache, the largest slots where the
// cache is unknown.
#include "services/device/ring_size.h"

#include "gtest/gtest.h"

namespace weightd {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;

TEST(RingSize, OneGpuOnALargeCacheTakesTheLargestSlots) {
  EXPECT_EQ(AutoStagingRingBytes(300 * kMiB, 16, 1), 128 * kMiB);
  EXPECT_EQ(AutoStagingRingBytes(192 * kMiB, 16, 1), 128 * kMiB);  // exactly 2/3
}

TEST(RingSize, TheRingsStayWithinTwoThirdsOfTheCache) {
  // 105 MiB: 70 MiB for 16 slots, 4 MiB each (4.375 rounded down).
  EXPECT_EQ(AutoStagingRingBytes(105 * kMiB, 16, 1), 64 * kMiB);
  // 150 MiB: 100 MiB for 16 slots, 6 MiB each.
  EXPECT_EQ(AutoStagingRingBytes(150 * kMiB, 16, 1), 96 * kMiB);
  // 300 MiB shared by 2 GPUs: 100 MiB each, 6 MiB slots.
  EXPECT_EQ(AutoStagingRingBytes(300 * kMiB, 16, 2), 96 * kMiB);
  // 8 slots: 8 MiB each where 16 would get 4.
  EXPECT_EQ(AutoStagingRingBytes(105 * kMiB, 8, 1), 64 * kMiB);
}

TEST(RingSize, SlotsNeverGoBelowFourMiBOrAboveEight) {
  EXPECT_EQ(AutoStagingRingBytes(32 * kMiB, 16, 8), 16 * kMinStagingSlotBytes);
  EXPECT_EQ(AutoStagingRingBytes(uint64_t{1} << 40, 16, 1), 16 * kMaxStagingSlotBytes);
  EXPECT_EQ(AutoStagingRingBytes(0, 16, 1), 16 * kMaxStagingSlotBytes);  // unknown cache
  EXPECT_EQ(AutoStagingRingBytes(0, 0, 0), kMaxStagingSlotBytes);        // at least one slot
}

}  // namespace
}  // namespace weightd
