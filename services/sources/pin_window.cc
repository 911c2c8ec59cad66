#include "services/sources/pin_window.h"

#include <algorithm>
#include <chrono>

namespace weightd {
namespace {
double SecondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}
}  // namespace

PinWindow::PinWindow(DeviceBackend& backend, std::vector<const MappedFile*> files, const std::vector<Range>& segments,
                     uint64_t block_bytes, uint64_t window_bytes, int threads)
    : backend_(backend), files_(std::move(files)), window_bytes_(window_bytes) {
  block_bytes = std::max<uint64_t>(block_bytes, 1);
  // Blocks in the order segments first touch them; each is block_bytes of its file, aligned.
  std::vector<std::vector<size_t>> block_index(files_.size());  // by file: block number -> index + 1
  for (const Range& r : segments) {
    if (r.end <= r.begin) {
      segment_blocks_.push_back({1, 0});  // none
      continue;
    }
    auto& index = block_index[r.file];
    const uint64_t first = r.begin / block_bytes, last = (r.end - 1) / block_bytes;
    if (index.size() <= last) index.resize(last + 1, 0);
    std::pair<size_t, size_t> span{SIZE_MAX, 0};
    for (uint64_t b = first; b <= last; ++b) {
      if (index[b] == 0) {
        const uint64_t begin = b * block_bytes;
        blocks_.push_back(Block{r.file, begin, std::min(begin + block_bytes, files_[r.file]->size()), 0, false, nullptr});
        index[b] = blocks_.size();
      }
      const size_t i = index[b] - 1;
      ++blocks_[i].segments_left;
      span.first = std::min(span.first, i);
      span.second = std::max(span.second, i);
    }
    segment_blocks_.push_back(span);
  }
  // Room for the widest segment's blocks, whatever the window.
  for (const auto& [first, last] : segment_blocks_) {
    if (first <= last) {
      uint64_t bytes = 0;
      for (size_t b = first; b <= last; ++b) bytes += blocks_[b].end - blocks_[b].begin;
      window_bytes_ = std::max(window_bytes_, bytes + block_bytes);
    }
  }
  if (threads <= 0 || !backend_.pins_sources() || blocks_.empty()) {
    for (Block& b : blocks_) b.decided = true;  // nothing is pinned: no block to wait for
    next_block_ = blocks_.size();
    return;
  }
  for (int t = 0; t < threads; ++t) pinners_.emplace_back([this] { Pinner(); });
}

PinWindow::~PinWindow() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  changed_.notify_all();
  for (std::thread& t : pinners_) t.join();
  for (Block& b : blocks_) b.pin.reset();
}

void PinWindow::Pinner() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    changed_.wait(lock, [&] {
      if (stopping_ || next_block_ >= blocks_.size()) return true;
      const Block& b = blocks_[next_block_];
      return pinned_bytes_ == 0 || pinned_bytes_ + (b.end - b.begin) <= window_bytes_;
    });
    if (stopping_ || next_block_ >= blocks_.size()) return;
    Block& block = blocks_[next_block_++];
    pinned_bytes_ += block.end - block.begin;
    lock.unlock();
    const auto start = std::chrono::steady_clock::now();
    const MappedFile& file = *files_[block.file];
    std::unique_ptr<SourcePin> pin;
    if (file.Cached(block.begin, block.end - block.begin)) {
      pin = backend_.PinSource(file.view(block.begin, 0).data(), block.end - block.begin);
    }
    const double took = SecondsSince(start);
    lock.lock();
    pin_seconds_ += took;
    block.pin = std::move(pin);
    block.decided = true;
    changed_.notify_all();
  }
}

void PinWindow::Acquire(size_t i, const std::function<bool()>& stop) {
  const auto [first, last] = segment_blocks_[i];
  std::unique_lock<std::mutex> lock(mu_);
  for (size_t b = first; b <= last && b < blocks_.size(); ++b) {
    while (!blocks_[b].decided && !stopping_) {
      if (stop()) return;
      changed_.wait_for(lock, std::chrono::milliseconds(5));
    }
  }
}

void PinWindow::Release(size_t i) {
  const auto [first, last] = segment_blocks_[i];
  std::vector<std::unique_ptr<SourcePin>> done;
  uint64_t freed = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t b = first; b <= last && b < blocks_.size(); ++b) {
      if (--blocks_[b].segments_left == 0 && blocks_[b].decided) {
        done.push_back(std::move(blocks_[b].pin));
        freed += blocks_[b].end - blocks_[b].begin;
      }
    }
  }
  const auto start = std::chrono::steady_clock::now();
  done.clear();  // waits for the blocks' copies, then unpins: outside the lock
  const double took = SecondsSince(start);
  {
    std::lock_guard<std::mutex> lock(mu_);
    pinned_bytes_ -= freed;
    unpin_seconds_ += took;
  }
  changed_.notify_all();
}

double PinWindow::pin_seconds() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pin_seconds_;
}

double PinWindow::unpin_seconds() const {
  std::lock_guard<std::mutex> lock(mu_);
  return unpin_seconds_;
}

}  // namespace weightd
