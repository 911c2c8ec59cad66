// Runs callbacks at their deadlines, on one thread of its own: the gRPC
// PushShards streams that send nothing are answered by it
// (PushShardsReactor::CutIfSilent). A callback cancelled before its time never
// runs; Cancel waits while it runs (unless called on the timer's own thread,
// from inside a callback), so what a callback touches may be freed once Cancel
// returns. Callbacks not yet due when the timer is destroyed never run.
// Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>

namespace weightd {

class DeadlineTimer {
 public:
  using Clock = std::chrono::steady_clock;

  DeadlineTimer();
  ~DeadlineTimer();
  DeadlineTimer(const DeadlineTimer&) = delete;
  DeadlineTimer& operator=(const DeadlineTimer&) = delete;

  // Runs `fire` at `when` (at once if that has passed); the id is for Cancel.
  uint64_t At(Clock::time_point when, std::function<void()> fire);
  // `id` never runs if it has not begun; if it is running, returns once it has.
  void Cancel(uint64_t id);

 private:
  void Run();

  std::mutex mu_;
  std::condition_variable cv_;  // an earlier deadline, stopping, or a callback done
  std::map<std::pair<Clock::time_point, uint64_t>, std::function<void()>> due_;
  std::unordered_map<uint64_t, Clock::time_point> when_;  // of each id in due_
  uint64_t next_id_ = 1;
  uint64_t running_ = 0;  // the id whose callback runs now; 0: none
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace weightd
