#include "services/load/arena_lot.h"

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "gtest/gtest.h"

namespace weightd {
namespace {

using Region = ArenaLot::Region;

TEST(ArenaLotTest, LeasesAreAlignedDisjointAndInsideTheRanksRegions) {
  // Rank 0: two regions (one starting unaligned); rank 1: one.
  ArenaLot lot({{Region{1000, 5000}, Region{8192, 4096}}, {Region{0, 1024}}});
  auto a = lot.TryLease(0, 1000);  // 1024 bytes from 1024
  auto b = lot.TryLease(0, 3000);  // 3072 from 2048: fits before 6000
  auto c = lot.TryLease(0, 2000);  // no room left in the first region: the second
  auto d = lot.TryLease(1, 1024);
  ASSERT_TRUE(a && b && c && d);
  EXPECT_EQ(a->offset(), 1024u);
  EXPECT_EQ(b->offset(), 2048u);
  EXPECT_EQ(c->offset(), 8192u);
  EXPECT_EQ(d->offset(), 0u);
  EXPECT_FALSE(lot.TryLease(1, 1));        // rank 1 is full
  EXPECT_FALSE(lot.TryLease(0, 4096));     // 2048 left in the second region
  EXPECT_FALSE(lot.TryLease(2, 1));        // no such rank
  EXPECT_FALSE(lot.TryLease(0, 0));
  auto e = lot.TryLease(0, 2048);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->offset(), 8192u + 2048);
  EXPECT_EQ(lot.leases_granted(), 5u);
}

TEST(ArenaLotTest, AReturnedRangeIsLeasedAgainOnlyOnceTheDeviceHasReadIt) {
  ArenaLot lot({{Region{0, 4096}}});
  auto a = lot.TryLease(0, 4096);
  ASSERT_TRUE(a);
  EXPECT_FALSE(lot.TryLease(0, 256));
  std::atomic<bool> read{false};
  a->Return([&read] { return read.load(); });
  EXPECT_FALSE(lot.TryLease(0, 256));  // still being read
  read = true;
  auto b = lot.TryLease(0, 4096);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->offset(), 0u);
  b.reset();  // dropped: given back at once
  EXPECT_TRUE(lot.TryLease(0, 4096));
}

TEST(ArenaLotTest, MovingALeaseMovesTheHold) {
  ArenaLot lot({{Region{0, 256}}});
  std::optional<ArenaLot::Lease> a = lot.TryLease(0, 256);
  ASSERT_TRUE(a);
  ArenaLot::Lease moved = std::move(*a);
  a.reset();  // the moved-from lease holds nothing
  EXPECT_FALSE(lot.TryLease(0, 256));
  moved.Return(nullptr);
  EXPECT_TRUE(lot.TryLease(0, 256));
}

TEST(ArenaLotTest, CloseWaitsForEveryLeaseThenFencesOnceAndGrantsNoMore) {
  ArenaLot lot({{Region{0, 1 << 20}}});
  auto held = lot.TryLease(0, 4096);
  ASSERT_TRUE(held);
  std::atomic<int> fences{0};
  std::atomic<bool> returned{false};
  auto fence = [&] {
    EXPECT_TRUE(returned.load()) << "the fence ran while a lease was held";
    ++fences;
    return absl::OkStatus();
  };
  auto first = std::async(std::launch::async, [&] { return lot.Close(fence); });
  auto second = std::async(std::launch::async, [&] { return lot.Close(fence); });
  EXPECT_EQ(first.wait_for(std::chrono::milliseconds(100)), std::future_status::timeout);
  EXPECT_FALSE(lot.TryLease(0, 256));  // closing: no new lease
  returned = true;
  held->Return(nullptr);
  EXPECT_TRUE(first.get().ok());
  EXPECT_TRUE(second.get().ok());
  EXPECT_EQ(fences.load(), 1);
  EXPECT_FALSE(lot.TryLease(0, 256));
  EXPECT_TRUE(lot.Close(fence).ok());
  EXPECT_EQ(fences.load(), 1);
}

TEST(ArenaLotTest, TheFencesFailureIsEveryClosersStatus) {
  ArenaLot lot({{Region{0, 4096}}});
  EXPECT_EQ(lot.Close([] { return absl::InternalError("device lost"); }).code(), absl::StatusCode::kInternal);
  EXPECT_EQ(lot.Close([] { return absl::OkStatus(); }).code(), absl::StatusCode::kInternal);
}

TEST(ArenaLotTest, AbortEndsACloseThatWaitsForALeaseThatNeverComesBack) {
  ArenaLot lot({{Region{0, 4096}}});
  auto stuck = lot.TryLease(0, 4096);  // as one held across a collective that never returns
  ASSERT_TRUE(stuck);
  bool fenced = false;
  auto closing = std::async(std::launch::async, [&] { return lot.Close([&] { fenced = true; return absl::OkStatus(); }); });
  EXPECT_EQ(closing.wait_for(std::chrono::milliseconds(50)), std::future_status::timeout);
  lot.Abort();
  EXPECT_EQ(closing.get().code(), absl::StatusCode::kAborted);
  EXPECT_FALSE(fenced);
  EXPECT_EQ(lot.Close(nullptr).code(), absl::StatusCode::kAborted);
  EXPECT_FALSE(lot.TryLease(0, 256));
}

}  // namespace
}  // namespace weightd
