// A fixed pool of worker threads for the daemon's long work (parsing, hashing,
// quantizing), so gRPC reactions never block. Thread-safe.
#pragma once

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
  ~Executor();  // runs every task already posted, then joins
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  void Post(std::function<void()> task);

 private:
  void Run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace weightd
