// The in-process collective: all-reduce(max) and broadcast between host devices.
#include "services/device/in_process_collective.h"

#include "gtest/gtest.h"
#include "services/device/host_backend.h"

namespace weightd {
namespace {

TEST(InProcessCollective, AllReduceMaxLeavesEveryRankTheElementwiseMaximum) {
  HostBackend backend(3, 1 << 20);
  auto group = backend.GroupCollective({0, 1, 2});
  ASSERT_TRUE(group.ok());
  std::vector<std::vector<float>> values = {{1.0f, 0.0f}, {0.5f, 7.0f}, {3.0f, 2.0f}};
  ASSERT_TRUE((*group)->AllReduceMax(values).ok());
  for (const auto& v : values) EXPECT_EQ(v, (std::vector<float>{3.0f, 7.0f}));
}

TEST(InProcessCollective, BroadcastCopiesTheRootRegionToEveryOtherRank) {
  HostBackend backend(3, 1 << 20);
  auto group = backend.GroupCollective({2, 0, 1});
  ASSERT_TRUE(group.ok());
  std::vector<std::unique_ptr<DeviceAllocation>> allocations;
  for (int d : {2, 0, 1}) allocations.push_back(*backend.Allocate(d, 4096, "t"));
  const std::string bytes = "replicated tensor bytes";
  ASSERT_TRUE(backend.Write(*allocations[1], 100, bytes).ok());
  std::vector<RankRegion> regions = {{allocations[0].get(), 8}, {allocations[1].get(), 100}, {allocations[2].get(), 0}};
  ASSERT_TRUE((*group)->Broadcast(1, regions, bytes.size()).ok());
  for (const RankRegion& region : regions) {
    std::string out(bytes.size(), '\0');
    ASSERT_TRUE(backend.Read(*region.allocation, region.offset, out.size(), out.data()).ok());
    EXPECT_EQ(out, bytes);
  }
}

}  // namespace
}  // namespace weightd
