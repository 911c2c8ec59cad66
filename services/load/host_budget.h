// The daemon's host memory for pushed bytes under --host-memory-limit: the
// messages a push stream has received and not yet processed, and the tensors
// it gathers on the host (a quantized tensor needs all of its bytes for its
// amax) from their first byte until they are on the device.
//
// Flow control, without deadlock. A quarter of the limit is for read-ahead,
// three quarters for gathered tensors:
// - A stream reads ahead (more than one message) only while the messages held
//   are under a quarter of the limit and the total under the limit; a stream
//   holding no message may always read one, so every stream moves
//   (services/server/push_shards_reactor.h). When reads pause, gRPC's flow
//   control holds the client back.
// - A gathered tensor is admitted whole, before its first byte, when it fits in
//   the gathering share beside the tensors already admitted; otherwise the
//   stream waits (without a thread) until placements free enough. An admitted
//   tensor never waits for memory again, so admitted tensors always finish. A
//   tensor larger than the whole share fails its load (RESOURCE_EXHAUSTED).
// The total therefore stays under the limit plus one message per open stream.
//
// Thread-safe. `ready` callbacks run on the thread that frees the memory, after
// the budget's lock is released; they must only post work.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>

namespace weightd {

class HostBudget {
 public:
  explicit HostBudget(uint64_t limit) : limit_(limit) {}  // 0: no limit

  uint64_t limit() const { return limit_; }
  // The most bytes of gathered tensors at once (0: no limit).
  uint64_t gather_limit() const { return limit_ - limit_ / 4; }
  // Received messages: charged when they arrive (they are already here).
  void ChargeMessage(uint64_t bytes);
  void ReleaseMessage(uint64_t bytes);
  // Whether a stream that holds messages may read ahead.
  bool MayReadAhead() const;

  enum class Admission { kAdmitted, kQueued, kTooLarge };
  struct Ticket {
    Admission admission;
    uint64_t id = 0;  // kQueued: names the wait
  };
  // Gathered tensors. kQueued: `ready` runs once the bytes are admitted (in
  // arrival order; a large waiter holds back smaller ones behind it).
  Ticket AdmitGather(uint64_t bytes, std::function<void()> ready);
  void ReleaseGather(uint64_t bytes);
  // Whether any stream waits for an admission.
  bool HasWaiters() const;
  // Whether a kQueued ticket still waits.
  bool Waiting(uint64_t id) const;
  // Gives up a kQueued ticket: true if it still waited (nothing is charged);
  // false if it was admitted meanwhile (its bytes are charged: release them).
  bool Withdraw(uint64_t id);

  uint64_t used() const;       // messages and gathered tensors now
  uint64_t peak_used() const;  // since start
  // Called (under the budget's lock: it must not call back) on every change.
  void set_observer(std::function<void(uint64_t used, uint64_t peak)> observer) { observer_ = std::move(observer); }

 private:
  struct Waiter {
    uint64_t id;
    uint64_t bytes;
    std::function<void()> ready;
  };
  // Under mu_: admits waiters in order while they fit; returns their callbacks.
  std::deque<std::function<void()>> AdmitWaitersLocked();
  void ChangedLocked();

  const uint64_t limit_;
  mutable std::mutex mu_;
  uint64_t messages_ = 0;
  uint64_t gathers_ = 0;
  uint64_t peak_ = 0;
  uint64_t next_id_ = 1;
  std::deque<Waiter> waiters_;
  std::function<void(uint64_t, uint64_t)> observer_;
};

}  // namespace weightd
