// The ledger of page-locked host memory weightd holds (the CUDA backend's
// staging buffers, registered with cudaHostAlloc/cudaHostRegister): bytes held
// now and their high-water mark since start. The backend calls Add when it pins
// and Release when it unpins; metrics observe it. The host backend pins nothing,
// so there both stay 0. Thread-safe; the observer is called outside the lock.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>

namespace weightd {

class HostPinnedAccounting {
 public:
  using Observer = std::function<void(uint64_t used, uint64_t peak)>;

  void set_observer(Observer observer) {
    std::lock_guard<std::mutex> lock(mu_);
    observer_ = std::move(observer);
  }

  void Add(uint64_t bytes) {
    Observer observer;
    uint64_t used, peak;
    {
      std::lock_guard<std::mutex> lock(mu_);
      used_ += bytes;
      if (used_ > peak_) peak_ = used_;
      used = used_;
      peak = peak_;
      observer = observer_;
    }
    if (observer) observer(used, peak);
  }

  // Releasing more than is held is a caller bug; the ledger stops at 0.
  void Release(uint64_t bytes) {
    Observer observer;
    uint64_t used, peak;
    {
      std::lock_guard<std::mutex> lock(mu_);
      used_ -= bytes > used_ ? used_ : bytes;
      used = used_;
      peak = peak_;
      observer = observer_;
    }
    if (observer) observer(used, peak);
  }

  uint64_t used() const {
    std::lock_guard<std::mutex> lock(mu_);
    return used_;
  }
  uint64_t peak() const {
    std::lock_guard<std::mutex> lock(mu_);
    return peak_;
  }

 private:
  mutable std::mutex mu_;
  uint64_t used_ = 0;
  uint64_t peak_ = 0;
  Observer observer_;
};

}  // namespace weightd
