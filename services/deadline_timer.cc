#include "services/deadline_timer.h"

namespace weightd {

DeadlineTimer::DeadlineTimer() : thread_(&DeadlineTimer::Run, this) {}

DeadlineTimer::~DeadlineTimer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

uint64_t DeadlineTimer::At(Clock::time_point when, std::function<void()> fire) {
  bool earliest = false;
  uint64_t id = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    id = next_id_++;
    auto it = due_.emplace(std::make_pair(when, id), std::move(fire)).first;
    when_.emplace(id, when);
    earliest = it == due_.begin();
  }
  if (earliest) cv_.notify_all();
  return id;
}

void DeadlineTimer::Cancel(uint64_t id) {
  std::unique_lock<std::mutex> lock(mu_);
  auto it = when_.find(id);
  if (it != when_.end()) {
    due_.erase(std::make_pair(it->second, id));
    when_.erase(it);
    return;
  }
  if (std::this_thread::get_id() == thread_.get_id()) return;  // from a callback: it is the one running
  cv_.wait(lock, [&] { return running_ != id; });
}

void DeadlineTimer::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    if (due_.empty()) {
      cv_.wait(lock);
      continue;
    }
    auto first = due_.begin();
    const Clock::time_point when = first->first.first;  // a copy: Cancel may erase the entry while this waits
    if (when > Clock::now()) {
      cv_.wait_until(lock, when);
      continue;
    }
    std::function<void()> fire = std::move(first->second);
    running_ = first->first.second;
    when_.erase(running_);
    due_.erase(first);
    lock.unlock();
    fire();
    fire = nullptr;  // what it holds goes before Cancel may return
    lock.lock();
    running_ = 0;
    cv_.notify_all();
  }
}

}  // namespace weightd
