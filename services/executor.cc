#include "services/executor.h"

#include <pthread.h>

#include <algorithm>

namespace weightd {

Executor::Executor(int threads, const char* name) {
  if (threads < 1) threads = 1;
  const std::string thread_name = std::string(name).substr(0, 15);  // the kernel's limit
  ended_.assign(static_cast<size_t>(threads), false);
  for (int i = 0; i < threads; ++i) {
    threads_.emplace_back([this, i] { Run(static_cast<size_t>(i)); });
    pthread_setname_np(threads_.back().native_handle(), thread_name.c_str());
  }
}

Executor::~Executor() { JoinUntil(std::chrono::steady_clock::time_point::max()); }

void Executor::Post(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
}

void Executor::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
}

size_t Executor::JoinUntil(std::chrono::steady_clock::time_point deadline) {
  Stop();
  {
    std::unique_lock<std::mutex> lock(mu_);
    auto all_ended = [this] { return std::all_of(ended_.begin(), ended_.end(), [](bool e) { return e; }); };
    if (deadline == std::chrono::steady_clock::time_point::max()) {
      ended_cv_.wait(lock, all_ended);
    } else {
      ended_cv_.wait_until(lock, deadline, all_ended);
    }
  }
  size_t detached = 0;
  for (size_t i = 0; i < threads_.size(); ++i) {
    if (!threads_[i].joinable()) continue;
    bool ended;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ended = ended_[i];
    }
    if (ended) {
      threads_[i].join();
    } else {
      threads_[i].detach();
      ++detached;
    }
  }
  return detached;
}

void Executor::Run(size_t index) {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) {
        ended_[index] = true;
        ended_cv_.notify_all();
        return;
      }
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

}  // namespace weightd
