// Fails push loads that stop making progress: a shard stream that never opens
// (the client forgot a file or died before sending it) or stops sending bytes
// would otherwise hold the load, and its reserved memory, forever. A load whose
// activity (headers in, shards done, data bytes) has not changed for `idle` fails
// with DEADLINE_EXCEEDED naming what it still waits for: shards, or device work
// in flight (allocation, the final synchronization and broadcast) that has not
// returned. Failing a load never waits for its device calls (load_job.h).
// Thread-safe; one internal thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "services/load/load_job.h"

namespace weightd {

class StallWatchdog {
 public:
  explicit StallWatchdog(std::chrono::milliseconds idle);
  ~StallWatchdog();
  StallWatchdog(const StallWatchdog&) = delete;
  StallWatchdog& operator=(const StallWatchdog&) = delete;

  // Watches `job` until it finishes; holds it only weakly.
  void Watch(const std::shared_ptr<LoadJob>& job);

 private:
  struct Watched {
    std::weak_ptr<LoadJob> job;
    uint64_t activity = 0;
    std::chrono::steady_clock::time_point since;
  };
  void Run();

  const std::chrono::milliseconds idle_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::vector<Watched> watched_;
  std::thread thread_;
};

}  // namespace weightd
