// What a daemon gives to peers: at most --peer-serve-bandwidth bytes per second
// over all its serving streams (0: no cap), and at most a number of streams at
// once. Each stream asks before it sends a message; its bytes are given a slot
// in one timeline, so streams share the rate in turn. Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>

namespace weightd {

class ServeLimiter {
 public:
  ServeLimiter(uint64_t bytes_per_second, uint32_t max_streams);

  // Waits until `bytes` may be sent; false if `stop` became true first.
  bool Acquire(uint64_t bytes, const std::atomic<bool>& stop);
  // A stream starts (false: max_streams are serving) or ends.
  bool StartStream();
  void EndStream();
  uint32_t streams() const { return streams_.load(); }
  uint32_t max_streams() const { return max_streams_; }

 private:
  const uint64_t bytes_per_second_;
  const uint32_t max_streams_;
  std::atomic<uint32_t> streams_{0};
  std::mutex mu_;
  std::chrono::steady_clock::time_point next_free_{};
};

}  // namespace weightd
