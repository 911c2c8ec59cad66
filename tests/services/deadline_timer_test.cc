// DeadlineTimer: callbacks run at their time, in order; a cancelled one never
// runs; Cancel waits for one that is running, except from inside it.
#include "services/deadline_timer.h"

#include <atomic>
#include <future>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace weightd {
namespace {

using Clock = DeadlineTimer::Clock;
using std::chrono::milliseconds;

TEST(DeadlineTimer, RunsCallbacksInTheOrderOfTheirDeadlines) {
  DeadlineTimer timer;
  std::mutex mu;
  std::vector<int> order;
  std::promise<void> done;
  const Clock::time_point now = Clock::now();
  timer.At(now + milliseconds(60), [&] {
    std::lock_guard<std::mutex> lock(mu);
    order.push_back(3);
    done.set_value();
  });
  timer.At(now + milliseconds(20), [&] {
    std::lock_guard<std::mutex> lock(mu);
    order.push_back(2);
  });
  timer.At(now - milliseconds(1), [&] {  // already due
    std::lock_guard<std::mutex> lock(mu);
    order.push_back(1);
  });
  done.get_future().wait();
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
  EXPECT_GE(Clock::now(), now + milliseconds(60));
}

// Cancelled before its time, a callback never runs: one due just after it does,
// and callbacks run in deadline order, so the cancelled one would have run first.
// (Cancel comes right after At: 3 s of margin for a busy machine.)
TEST(DeadlineTimer, ACancelledCallbackNeverRuns) {
  DeadlineTimer timer;
  std::atomic<bool> cancelled_ran{false};
  std::promise<void> later_ran;
  const Clock::time_point due = Clock::now() + std::chrono::seconds(3);
  const uint64_t id = timer.At(due, [&] { cancelled_ran = true; });
  timer.Cancel(id);
  timer.At(due + milliseconds(1), [&] { later_ran.set_value(); });
  later_ran.get_future().wait();
  EXPECT_FALSE(cancelled_ran);
  timer.Cancel(id);  // again: nothing to do
}

// What a callback touches may be freed once Cancel returns: Cancel waits for a
// callback that has begun.
TEST(DeadlineTimer, CancelWaitsForACallbackThatIsRunning) {
  DeadlineTimer timer;
  std::promise<void> began, release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<bool> finished{false};
  const uint64_t id = timer.At(Clock::now(), [&, released] {
    began.set_value();
    released.wait();
    finished = true;
  });
  began.get_future().wait();
  std::atomic<bool> cancel_returned{false};
  std::thread canceller([&] {
    timer.Cancel(id);
    EXPECT_TRUE(finished);
    cancel_returned = true;
  });
  std::this_thread::sleep_for(milliseconds(50));
  EXPECT_FALSE(cancel_returned);  // the callback is still held
  release.set_value();
  canceller.join();
  EXPECT_TRUE(cancel_returned);
}

TEST(DeadlineTimer, ACallbackMayCancelItselfAndScheduleAnother) {
  DeadlineTimer timer;
  std::promise<void> second;
  uint64_t id = 0;
  std::promise<uint64_t> id_known;
  std::shared_future<uint64_t> known = id_known.get_future().share();
  id = timer.At(Clock::now(), [&, known] {
    timer.Cancel(known.get());  // its own id: returns at once
    timer.At(Clock::now(), [&] { second.set_value(); });
  });
  id_known.set_value(id);
  second.get_future().wait();
}

TEST(DeadlineTimer, CallbacksNotYetDueNeverRunOnceTheTimerIsGone) {
  std::atomic<bool> ran{false};
  {
    DeadlineTimer timer;
    timer.At(Clock::now() + std::chrono::hours(1), [&] { ran = true; });
  }
  EXPECT_FALSE(ran);
}

}  // namespace
}  // namespace weightd
