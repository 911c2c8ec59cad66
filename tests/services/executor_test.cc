// Executor: every posted task runs before its threads end; JoinUntil joins the
// threads that end by its deadline and leaves (detaches) one stuck in a task,
// which is not ended whether or not it has begun the task by then.
#include "services/executor.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

#include "gtest/gtest.h"

namespace weightd {
namespace {

TEST(ExecutorTest, JoinUntilRunsEveryPostedTaskAndJoinsEveryThread) {
  Executor executor(2, "test");
  std::atomic<int> ran{0};
  for (int i = 0; i < 100; ++i) executor.Post([&ran] { ++ran; });
  EXPECT_EQ(executor.JoinUntil(std::chrono::steady_clock::now() + std::chrono::seconds(20)), 0u);
  EXPECT_EQ(ran.load(), 100);
}

TEST(ExecutorTest, JoinUntilLeavesAThreadStuckInATask) {
  // Kept for the rest of the process: the detached thread still uses it once
  // its task returns (executor.h).
  static auto* const executor = new Executor(1, "test");
  static std::mutex mu;
  static std::condition_variable cv;
  static bool release = false;
  executor->Post([] {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [] { return release; });
  });
  EXPECT_EQ(executor->JoinUntil(std::chrono::steady_clock::now() + std::chrono::milliseconds(200)), 1u);
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();  // the detached thread ends on its own
}

}  // namespace
}  // namespace weightd
