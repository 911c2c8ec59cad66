#include "services/peer/serve_limiter.h"

#include <algorithm>
#include <thread>

namespace weightd {

ServeLimiter::ServeLimiter(uint64_t bytes_per_second, uint32_t max_streams)
    : bytes_per_second_(bytes_per_second), max_streams_(max_streams) {}

bool ServeLimiter::Acquire(uint64_t bytes, const std::atomic<bool>& stop) {
  if (bytes_per_second_ == 0) return !stop.load();
  using Clock = std::chrono::steady_clock;
  Clock::time_point start;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const Clock::time_point now = Clock::now();
    start = std::max(now, next_free_);
    next_free_ = start + std::chrono::duration_cast<Clock::duration>(
                             std::chrono::duration<double>(static_cast<double>(bytes) / bytes_per_second_));
  }
  // The slot's start; sleep in steps so a cancelled stream stops at once.
  while (Clock::now() < start) {
    if (stop.load()) return false;
    std::this_thread::sleep_for(std::min<Clock::duration>(start - Clock::now(), std::chrono::milliseconds(20)));
  }
  return !stop.load();
}

bool ServeLimiter::StartStream() {
  uint32_t now = streams_.load();
  do {
    if (max_streams_ != 0 && now >= max_streams_) return false;
  } while (!streams_.compare_exchange_weak(now, now + 1));
  return true;
}

void ServeLimiter::EndStream() { --streams_; }

}  // namespace weightd
