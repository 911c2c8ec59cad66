#include "services/load/stall_watchdog.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace weightd {

StallWatchdog::StallWatchdog(std::chrono::milliseconds idle) : idle_(idle), thread_(&StallWatchdog::Run, this) {}

StallWatchdog::~StallWatchdog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void StallWatchdog::Watch(const std::shared_ptr<LoadJob>& job) {
  std::lock_guard<std::mutex> lock(mu_);
  watched_.push_back(Watched{job, job->activity(), std::chrono::steady_clock::now()});
  cv_.notify_all();
}

void StallWatchdog::Run() {
  // A stall is noticed within a quarter of `idle` after it is due.
  const auto tick = std::max(idle_ / 4, std::chrono::milliseconds(10));
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, tick, [this] { return stopping_; });
    if (stopping_) break;
    auto now = std::chrono::steady_clock::now();
    std::vector<std::shared_ptr<LoadJob>> stalled;
    std::erase_if(watched_, [&](Watched& w) {
      std::shared_ptr<LoadJob> job = w.job.lock();
      if (job == nullptr || job->finished()) return true;
      uint64_t activity = job->activity();
      if (activity != w.activity) {
        w.activity = activity;
        w.since = now;
        return false;
      }
      if (now - w.since < idle_) return false;
      stalled.push_back(std::move(job));
      return true;
    });
    lock.unlock();
    // Outside the lock: failing a job runs its callbacks.
    for (const auto& job : stalled) {
      job->Fail(absl::DeadlineExceededError(absl::StrCat(
          "model '", job->model_id(), "': no progress for ", idle_.count(), " ms; waiting for ",
          job->DescribePending())));
    }
    stalled.clear();
    lock.lock();
  }
}

}  // namespace weightd
