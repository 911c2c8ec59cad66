#include "services/load/host_budget.h"

#include <vector>

#include "gtest/gtest.h"

namespace weightd {
namespace {

using Admission = HostBudget::Admission;

TEST(HostBudgetTest, GatheredTensorsAreAdmittedWholeInArrivalOrder) {
  HostBudget budget(400);  // 300 for gathered tensors
  std::vector<int> ready;
  EXPECT_EQ(budget.AdmitGather(200, [] {}).admission, Admission::kAdmitted);
  const HostBudget::Ticket big = budget.AdmitGather(300, [&] { ready.push_back(1); });
  ASSERT_EQ(big.admission, Admission::kQueued);
  // A small one that would fit waits behind the large one: no starvation.
  const HostBudget::Ticket small = budget.AdmitGather(50, [&] { ready.push_back(2); });
  ASSERT_EQ(small.admission, Admission::kQueued);
  EXPECT_TRUE(budget.HasWaiters());
  EXPECT_TRUE(budget.Waiting(big.id));
  budget.ReleaseGather(200);
  EXPECT_EQ(ready, std::vector<int>({1}));  // 300 admitted; 50 more does not fit yet
  EXPECT_FALSE(budget.Waiting(big.id));
  budget.ReleaseGather(300);
  EXPECT_EQ(ready, std::vector<int>({1, 2}));
  EXPECT_EQ(budget.used(), 50u);
  EXPECT_EQ(budget.peak_used(), 300u);
}

TEST(HostBudgetTest, ATensorLargerThanTheGatheringShareIsRefused) {
  HostBudget budget(400);
  EXPECT_EQ(budget.gather_limit(), 300u);
  EXPECT_EQ(budget.AdmitGather(301, [] {}).admission, Admission::kTooLarge);
  EXPECT_EQ(budget.used(), 0u);
}

TEST(HostBudgetTest, AWithdrawnWaiterLetsTheOnesBehindItIn) {
  HostBudget budget(400);
  bool small_ready = false;
  ASSERT_EQ(budget.AdmitGather(100, [] {}).admission, Admission::kAdmitted);
  const HostBudget::Ticket big = budget.AdmitGather(300, [] { FAIL() << "withdrawn"; });
  ASSERT_EQ(budget.AdmitGather(50, [&] { small_ready = true; }).admission, Admission::kQueued);
  EXPECT_TRUE(budget.Withdraw(big.id));  // it still waited: nothing charged
  EXPECT_TRUE(small_ready);
  EXPECT_EQ(budget.used(), 150u);
  EXPECT_FALSE(budget.Withdraw(big.id));
}

TEST(HostBudgetTest, ReadAheadStopsAtAQuarterInMessagesOrTheLimitInAll) {
  HostBudget budget(400);
  EXPECT_TRUE(budget.MayReadAhead());
  budget.ChargeMessage(99);
  EXPECT_TRUE(budget.MayReadAhead());
  budget.ChargeMessage(1);  // 100: a quarter in messages
  EXPECT_FALSE(budget.MayReadAhead());
  budget.ReleaseMessage(50);
  EXPECT_TRUE(budget.MayReadAhead());
  ASSERT_EQ(budget.AdmitGather(300, [] {}).admission, Admission::kAdmitted);  // 350 of 400
  EXPECT_TRUE(budget.MayReadAhead());
  budget.ChargeMessage(49);  // 399
  EXPECT_TRUE(budget.MayReadAhead());
  budget.ChargeMessage(1);
  EXPECT_FALSE(budget.MayReadAhead());
}

TEST(HostBudgetTest, NoLimitAdmitsEverything) {
  HostBudget budget(0);
  budget.ChargeMessage(uint64_t{1} << 40);
  EXPECT_TRUE(budget.MayReadAhead());
  EXPECT_EQ(budget.AdmitGather(uint64_t{1} << 40, [] {}).admission, Admission::kAdmitted);
}

}  // namespace
}  // namespace weightd
