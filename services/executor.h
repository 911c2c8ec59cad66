// A fixed pool of worker threads for the daemon's long work (parsing, hashing,
// quantizing), so gRPC reactions never block. Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace weightd {

class Executor {
 public:
  // `name` (at most 15 characters) names its threads, as `top -H` and
  // /proc/PID/task/*/comm show them.
  Executor(int threads, const char* name);
  ~Executor();  // runs every task already posted, then joins (Stop, then JoinUntil forever)
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  void Post(std::function<void()> task);

  // Each thread ends once the queue is empty. Returns at once.
  void Stop();
  // Stop, then joins the threads that end by `deadline`, and detaches the rest:
  // threads still in a task (a device call that never returns). Returns how many
  // were detached. Those threads keep using this executor (and whatever their
  // task uses) if their task ever returns, so an executor that detached any
  // must never be destroyed: the process leaks it and ends (services/server/daemon.h).
  size_t JoinUntil(std::chrono::steady_clock::time_point deadline);

 private:
  void Run(size_t index);

  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable ended_cv_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::vector<bool> ended_;  // by thread, guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace weightd
