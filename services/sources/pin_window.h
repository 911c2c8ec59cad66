// Pins a path load's mapped checkpoint files for the devices a block at a time,
// ahead of the threads that read them (DeviceBackend::PinSource): pinning and
// unpinning are costly driver calls (on CUDA about 30 GB/s each, and an unpin
// waits for the copies from its pages), so they are done for large blocks by
// threads of their own, never by the reading threads. Readers never wait for a
// pin: what is pinned when a segment is read is copied from the page cache in
// place, the rest through the staging ring, so the two paths share the load by
// their speeds. A block is pinned only while a segment that needs it has not been
// started (pinning what the readers have passed is wasted), only if all of its
// pages are in the page cache (pinning a cold block would read it from disk on one
// thread), at most `window_bytes` at once, and unpinned, by the pinning threads,
// once every segment that overlaps it is done. Thread-safe.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "services/device/device_backend.h"
#include "services/sources/mapped_file.h"

namespace weightd {

class PinWindow {
 public:
  // Bytes [begin, end) of files[file], one per segment, in the order segments are taken.
  struct Range {
    size_t file = 0;
    uint64_t begin = 0, end = 0;
  };
  PinWindow(DeviceBackend& backend, std::vector<const MappedFile*> files, const std::vector<Range>& segments,
            uint64_t block_bytes, uint64_t window_bytes, int threads);  // no pinning without threads
  ~PinWindow();  // stops pinning and unpins every block still pinned
  PinWindow(const PinWindow&) = delete;
  PinWindow& operator=(const PinWindow&) = delete;

  // Segment `i` is being read now (never waits): blocks that no later segment needs
  // are passed over.
  void Start(size_t i);
  // Segment `i` is done (its copies issued): a block whose segments are all done is
  // unpinned by the pinning threads.
  void Release(size_t i);

  struct Stats {
    double pin_seconds = 0, unpin_seconds = 0;  // in the driver, all pinning threads
    uint64_t pinned_blocks = 0, pinned_bytes = 0;
    uint64_t passed_blocks = 0;  // never pinned: reached by the readers first, or not in the page cache
  };
  Stats stats() const;

 private:
  struct Block {
    size_t file = 0;
    uint64_t begin = 0, end = 0;
    int segments_left = 0;
    size_t last_segment = 0;  // the last segment that overlaps it
    std::unique_ptr<SourcePin> pin;  // set once pinned, until a pinning thread takes it to unpin
  };
  void Pinner();
  // The next block worth pinning, passing over those the readers have reached; null if none. Needs mu_.
  Block* NextBlockLocked();
  // Hands a pinned block whose segments are all done to the pinning threads. Needs mu_.
  void QueueUnpinLocked(Block& block);

  DeviceBackend& backend_;
  std::vector<const MappedFile*> files_;
  std::vector<Block> blocks_;
  std::vector<std::pair<size_t, size_t>> segment_blocks_;  // [first, last] block of each segment
  uint64_t window_bytes_;

  mutable std::mutex mu_;
  std::condition_variable changed_;
  size_t next_block_ = 0;       // the next block a pinner looks at
  size_t started_ = 0;          // segments [0, started_) have been started
  uint64_t pinned_bytes_ = 0;   // blocks taken by a pinner and not yet unpinned
  std::vector<Block*> unpin_;   // pinned blocks whose segments are all done
  bool stopping_ = false;
  Stats stats_;
  std::vector<std::thread> pinners_;
};

}  // namespace weightd
