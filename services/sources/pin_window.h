// Pins a path load's mapped checkpoint files for the devices a block at a time,
// ahead of the threads that read them (DeviceBackend::PinSource): pinning and
// unpinning are costly driver calls (on CUDA about 30 GB/s each, and an unpin
// waits for the copies from its pages), so they are done for large blocks by
// threads of their own, not for every segment by the reading threads. A block is
// pinned only if all of its pages are in the page cache (pinning a cold block
// would read it from disk on one thread); at most `window_bytes` are pinned at
// once, and a block is unpinned once every segment that overlaps it is done.
// Thread-safe.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
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

  // Waits until every block of segment `i` has been pinned or passed over, or
  // `stop` returns true (checked every few milliseconds).
  void Acquire(size_t i, const std::function<bool()>& stop);
  // Segment `i` is done (its copies issued): a block whose segments are all done is unpinned.
  void Release(size_t i);

  // Seconds the pinning threads spent in PinSource, and in unpinning (all threads).
  double pin_seconds() const;
  double unpin_seconds() const;

 private:
  struct Block {
    size_t file = 0;
    uint64_t begin = 0, end = 0;
    int segments_left = 0;
    bool decided = false;  // pinned, or passed over (cold, or the backend declined)
    std::unique_ptr<SourcePin> pin;
  };
  void Pinner();

  DeviceBackend& backend_;
  std::vector<const MappedFile*> files_;
  std::vector<Block> blocks_;
  std::vector<std::pair<size_t, size_t>> segment_blocks_;  // [first, last] block of each segment
  uint64_t window_bytes_;

  mutable std::mutex mu_;
  std::condition_variable changed_;
  size_t next_block_ = 0;       // the next block a pinner takes
  uint64_t pinned_bytes_ = 0;   // blocks taken by a pinner and not yet unpinned
  bool stopping_ = false;
  double pin_seconds_ = 0, unpin_seconds_ = 0;
  std::vector<std::thread> pinners_;
};

}  // namespace weightd
