#include "services/sources/pin_window.h"

#include <algorithm>
#include <chrono>

#include "base/seconds_since.h"

namespace weightd {

PinWindow::PinWindow(DeviceBackend& backend, std::vector<const MappedFile*> files, const std::vector<Range>& segments,
                     uint64_t block_bytes, uint64_t window_bytes, int threads)
    : backend_(backend), files_(std::move(files)), window_bytes_(window_bytes) {
  block_bytes = std::max<uint64_t>(block_bytes, 1);
  // Blocks in the order segments first touch them; each is block_bytes of its file, aligned.
  std::vector<std::vector<size_t>> block_index(files_.size());  // by file: block number -> index + 1
  for (size_t s = 0; s < segments.size(); ++s) {
    const Range& r = segments[s];
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
        Block block;
        block.file = r.file;
        block.begin = begin;
        block.end = std::min(begin + block_bytes, files_[r.file]->size());
        blocks_.push_back(std::move(block));
        index[b] = blocks_.size();
      }
      const size_t i = index[b] - 1;
      ++blocks_[i].segments_left;
      blocks_[i].last_segment = std::max(blocks_[i].last_segment, s);
      span.first = std::min(span.first, i);
      span.second = std::max(span.second, i);
    }
    segment_blocks_.push_back(span);
  }
  if (threads <= 0 || !backend_.pins_sources() || blocks_.empty()) {
    next_block_ = blocks_.size();  // nothing is pinned
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
  for (Block& b : blocks_) b.pin.reset();  // waits for the copies from each, then unpins
}

PinWindow::Block* PinWindow::NextBlockLocked() {
  while (next_block_ < blocks_.size()) {
    Block& b = blocks_[next_block_];
    if (b.last_segment >= started_) return &b;
    ++stats_.passed_blocks;  // every segment that needs it has been started
    ++next_block_;
  }
  return nullptr;
}

void PinWindow::QueueUnpinLocked(Block& block) {
  unpin_.push_back(&block);
  changed_.notify_all();
}

void PinWindow::Pinner() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    Block* next = nullptr;
    changed_.wait(lock, [&] {
      if (stopping_ || !unpin_.empty()) return true;
      next = NextBlockLocked();
      return next != nullptr && (pinned_bytes_ == 0 || pinned_bytes_ + (next->end - next->begin) <= window_bytes_);
    });
    if (stopping_) return;
    if (!unpin_.empty()) {  // frees room in the window first
      Block* done = unpin_.back();
      unpin_.pop_back();
      std::unique_ptr<SourcePin> pin = std::move(done->pin);
      lock.unlock();
      const auto start = std::chrono::steady_clock::now();
      pin.reset();  // waits for the copies from its pages, then unpins
      const double took = SecondsSince(start);
      lock.lock();
      stats_.unpin_seconds += took;
      pinned_bytes_ -= done->end - done->begin;
      changed_.notify_all();
      continue;
    }
    Block& block = *next;
    ++next_block_;
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
    stats_.pin_seconds += took;
    if (pin == nullptr) {
      ++stats_.passed_blocks;
      pinned_bytes_ -= block.end - block.begin;
      changed_.notify_all();
      continue;
    }
    ++stats_.pinned_blocks;
    stats_.pinned_bytes += block.end - block.begin;
    block.pin = std::move(pin);
    if (block.segments_left == 0) QueueUnpinLocked(block);  // its segments were all read meanwhile
  }
}

void PinWindow::Start(size_t i) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    started_ = std::max(started_, i + 1);
  }
  changed_.notify_all();  // a pinner waiting for room may pass blocks over now
}

void PinWindow::Release(size_t i) {
  const auto [first, last] = segment_blocks_[i];
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t b = first; b <= last && b < blocks_.size(); ++b) {
    Block& block = blocks_[b];
    if (--block.segments_left == 0 && block.pin != nullptr) QueueUnpinLocked(block);
  }
}

PinWindow::Stats PinWindow::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace weightd
