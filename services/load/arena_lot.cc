#include "services/load/arena_lot.h"

#include <utility>

namespace weightd {

ArenaLot::ArenaLot(std::vector<std::vector<Region>> regions) : regions_(std::move(regions)) {
  busy_.resize(regions_.size());
  for (size_t r = 0; r < regions_.size(); ++r) busy_[r].resize(regions_[r].size());
}

ArenaLot::Lease& ArenaLot::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    Return(nullptr);
    lot_ = std::exchange(other.lot_, nullptr);
    rank_ = other.rank_;
    region_ = other.region_;
    offset_ = other.offset_;
  }
  return *this;
}

void ArenaLot::Lease::Return(std::function<bool()> done) {
  if (lot_ == nullptr) return;
  std::exchange(lot_, nullptr)->Release(rank_, region_, offset_, std::move(done));
}

std::optional<ArenaLot::Lease> ArenaLot::TryLease(size_t rank, uint64_t bytes) {
  if (rank >= regions_.size() || bytes == 0) return std::nullopt;
  const uint64_t want = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  std::lock_guard<std::mutex> lock(mu_);
  if (closing_) return std::nullopt;
  for (size_t g = 0; g < regions_[rank].size(); ++g) {
    const Region& region = regions_[rank][g];
    std::map<uint64_t, Busy>& busy = busy_[rank][g];
    // Ranges the device has finished reading are free again.
    for (auto it = busy.begin(); it != busy.end();) {
      it = it->second.done && it->second.done() ? busy.erase(it) : std::next(it);
    }
    uint64_t at = (region.offset + kAlignment - 1) / kAlignment * kAlignment;
    const uint64_t end = region.offset + region.size;
    for (auto it = busy.begin();; ++it) {
      const uint64_t gap_end = it == busy.end() ? end : it->first;
      if (gap_end >= at && gap_end - at >= want) {
        busy.emplace(at, Busy{at + want, nullptr});
        ++held_;
        ++granted_;
        Lease lease;
        lease.lot_ = this;
        lease.rank_ = rank;
        lease.region_ = g;
        lease.offset_ = at;
        return lease;
      }
      if (it == busy.end()) break;
      at = (it->second.end + kAlignment - 1) / kAlignment * kAlignment;
    }
  }
  return std::nullopt;
}

void ArenaLot::Release(size_t rank, size_t region, uint64_t offset, std::function<bool()> done) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = busy_[rank][region].find(offset);
  if (it != busy_[rank][region].end()) {
    if (done) {
      it->second.done = std::move(done);
    } else {
      busy_[rank][region].erase(it);
    }
  }
  --held_;
  returned_.notify_all();
}

absl::Status ArenaLot::Close(const std::function<absl::Status()>& fence) {
  std::unique_lock<std::mutex> lock(mu_);
  if (closing_) {
    returned_.wait(lock, [&] { return fenced_ || aborted_; });
    return aborted_ ? absl::AbortedError("load aborted") : fence_status_;
  }
  closing_ = true;
  returned_.wait(lock, [&] { return held_ == 0 || aborted_; });
  if (aborted_) return absl::AbortedError("load aborted");
  lock.unlock();
  absl::Status status = fence ? fence() : absl::OkStatus();
  lock.lock();
  fence_status_ = status;
  fenced_ = true;
  returned_.notify_all();
  return status;
}

void ArenaLot::Abort() {
  std::lock_guard<std::mutex> lock(mu_);
  aborted_ = true;
  closing_ = true;
  returned_.notify_all();
}

uint64_t ArenaLot::leases_granted() const {
  std::lock_guard<std::mutex> lock(mu_);
  return granted_;
}

}  // namespace weightd
