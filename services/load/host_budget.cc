#include "services/load/host_budget.h"

#include <algorithm>

namespace weightd {

void HostBudget::ChargeMessage(uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  messages_ += bytes;
  ChangedLocked();
}

void HostBudget::ReleaseMessage(uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  messages_ -= std::min(bytes, messages_);
  ChangedLocked();
}

bool HostBudget::MayReadAhead() const {
  std::lock_guard<std::mutex> lock(mu_);
  return limit_ == 0 || (messages_ < limit_ / 4 && messages_ + gathers_ < limit_);
}

HostBudget::Ticket HostBudget::AdmitGather(uint64_t bytes, std::function<void()> ready) {
  std::lock_guard<std::mutex> lock(mu_);
  if (limit_ != 0 && bytes > gather_limit()) return {Admission::kTooLarge};
  if (waiters_.empty() && (limit_ == 0 || gathers_ + bytes <= gather_limit())) {
    gathers_ += bytes;
    ChangedLocked();
    return {Admission::kAdmitted};
  }
  const uint64_t id = next_id_++;
  waiters_.push_back({id, bytes, std::move(ready)});
  return {Admission::kQueued, id};
}

bool HostBudget::HasWaiters() const {
  std::lock_guard<std::mutex> lock(mu_);
  return !waiters_.empty();
}

bool HostBudget::Waiting(uint64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const Waiter& w : waiters_) {
    if (w.id == id) return true;
  }
  return false;
}

bool HostBudget::Withdraw(uint64_t id) {
  std::deque<std::function<void()>> ready;
  bool waited = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = waiters_.begin(); it != waiters_.end(); ++it) {
      if (it->id != id) continue;
      waiters_.erase(it);
      waited = true;
      ready = AdmitWaitersLocked();  // the ones it held back
      break;
    }
  }
  for (auto& r : ready) r();
  return waited;
}

void HostBudget::ReleaseGather(uint64_t bytes) {
  std::deque<std::function<void()>> ready;
  {
    std::lock_guard<std::mutex> lock(mu_);
    gathers_ -= std::min(bytes, gathers_);
    ready = AdmitWaitersLocked();
  }
  for (auto& r : ready) r();
}

std::deque<std::function<void()>> HostBudget::AdmitWaitersLocked() {
  std::deque<std::function<void()>> ready;
  while (!waiters_.empty() && gathers_ + waiters_.front().bytes <= gather_limit()) {
    gathers_ += waiters_.front().bytes;
    ready.push_back(std::move(waiters_.front().ready));
    waiters_.pop_front();
  }
  ChangedLocked();
  return ready;
}

void HostBudget::ChangedLocked() {
  peak_ = std::max(peak_, messages_ + gathers_);
  if (observer_) observer_(messages_ + gathers_, peak_);
}

uint64_t HostBudget::used() const {
  std::lock_guard<std::mutex> lock(mu_);
  return messages_ + gathers_;
}

uint64_t HostBudget::peak_used() const {
  std::lock_guard<std::mutex> lock(mu_);
  return peak_;
}

}  // namespace weightd
