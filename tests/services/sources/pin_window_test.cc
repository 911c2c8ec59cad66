// PinWindow against a backend that records its pins: blocks are pinned ahead of
// the segments that need them, only while their pages are in the page cache, never
// more than the window at once, and every pin goes once its segments are done.
#include "services/sources/pin_window.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "services/device/host_backend.h"

namespace weightd {
namespace {

// Counts live pins and their bytes; otherwise the host backend.
class RecordingBackend : public HostBackend {
 public:
  RecordingBackend() : HostBackend(1, uint64_t{1} << 30) {}
  std::unique_ptr<SourcePin> PinSource(const void* data, uint64_t size) override {
    std::lock_guard<std::mutex> lock(mu);
    live_bytes += size;
    peak_bytes = std::max(peak_bytes, live_bytes);
    ++pins;
    return std::make_unique<Pin>(this, size);
  }
  bool pins_sources() const override { return true; }
  struct Pin : SourcePin {
    Pin(RecordingBackend* b, uint64_t n) : backend(b), size(n) {}
    ~Pin() override {
      std::lock_guard<std::mutex> lock(backend->mu);
      backend->live_bytes -= size;
    }
    RecordingBackend* backend;
    uint64_t size;
  };
  std::mutex mu;
  uint64_t live_bytes = 0, peak_bytes = 0;
  int pins = 0;
};

class PinWindowTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = std::filesystem::temp_directory_path() / ("pin-window-" + std::to_string(::getpid()));
    std::string bytes(kFileBytes, 'x');
    FILE* f = std::fopen(path_.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), f), bytes.size());
    std::fclose(f);
    fd_ = ::open(path_.c_str(), O_RDONLY);
    auto map = MappedFile::Map(fd_, kFileBytes, path_.string());
    ASSERT_TRUE(map.ok());
    map_ = std::move(*map);
    map_.view(0, kFileBytes);  // written just now: every page is in the page cache
  }
  void TearDown() override {
    map_ = MappedFile();
    ::close(fd_);
    std::filesystem::remove(path_);
  }
  static constexpr uint64_t kFileBytes = uint64_t{8} << 20;
  static constexpr uint64_t kBlock = uint64_t{1} << 20;
  std::filesystem::path path_;
  int fd_ = -1;
  MappedFile map_;
};

TEST_F(PinWindowTest, BlocksArePinnedAheadWithinTheWindowAndAllGoWhenTheirSegmentsAreDone) {
  RecordingBackend backend;
  // Segments of 0.5 MiB, and one spanning three blocks.
  std::vector<PinWindow::Range> segments;
  for (uint64_t at = 0; at < 4 * kBlock; at += kBlock / 2) segments.push_back({0, at, at + kBlock / 2});
  segments.push_back({0, 4 * kBlock + 100, 7 * kBlock - 100});
  segments.push_back({0, 7 * kBlock, kFileBytes});
  {
    PinWindow window(backend, {&map_}, segments, kBlock, 2 * kBlock, 2);
    std::atomic<size_t> next{0};
    auto reader = [&] {
      for (size_t i = next++; i < segments.size(); i = next++) {
        window.Acquire(i, [] { return false; });
        window.Release(i);
      }
    };
    std::thread a(reader), b(reader);
    a.join();
    b.join();
    std::lock_guard<std::mutex> lock(backend.mu);
    EXPECT_EQ(backend.pins, 8);  // every block once
    EXPECT_EQ(backend.live_bytes, 0u);
    // The window (2 blocks), widened to the widest segment's three blocks plus one.
    EXPECT_LE(backend.peak_bytes, 4 * kBlock);
  }
}

TEST_F(PinWindowTest, AStopReleasesAWaitingReaderAndTheDestructorUnpinsWhatIsLeft) {
  RecordingBackend backend;
  std::vector<PinWindow::Range> segments = {{0, 0, kBlock}, {0, kBlock, 2 * kBlock}, {0, 2 * kBlock, 3 * kBlock}};
  {
    // A window of two blocks (one block, widened to the widest segment plus one).
    PinWindow window(backend, {&map_}, segments, kBlock, kBlock, 1);
    window.Acquire(0, [] { return false; });
    window.Acquire(1, [] { return false; });
    // Segments 0 and 1 are never released: their blocks fill the window, so segment
    // 2's block is not pinned; a stop ends the wait for it.
    window.Acquire(2, [] { return true; });
    std::lock_guard<std::mutex> lock(backend.mu);
    EXPECT_EQ(backend.pins, 2);
  }
  EXPECT_EQ(backend.live_bytes, 0u);
}

TEST_F(PinWindowTest, AFileOutOfThePageCacheIsNotPinned) {
  RecordingBackend backend;
  ::fdatasync(fd_);
  map_.Drop(0, kFileBytes);
  if (map_.Cached(0, kFileBytes)) GTEST_SKIP() << "this file system keeps the pages";
  std::vector<PinWindow::Range> segments = {{0, 0, kFileBytes}};
  PinWindow window(backend, {&map_}, segments, kBlock, 4 * kBlock, 2);
  window.Acquire(0, [] { return false; });
  window.Release(0);
  std::lock_guard<std::mutex> lock(backend.mu);
  EXPECT_EQ(backend.pins, 0);
}

TEST_F(PinWindowTest, ABackendThatPinsNothingIsNeverAskedAndNoSegmentWaits) {
  HostBackend backend(1, uint64_t{1} << 30);
  std::vector<PinWindow::Range> segments = {{0, 0, kBlock}, {0, kBlock, 3 * kBlock}};
  PinWindow window(backend, {&map_}, segments, kBlock, kBlock, 2);
  window.Acquire(0, [] { return false; });
  window.Acquire(1, [] { return false; });  // would wait for ever if a block were undecided
  window.Release(0);
  window.Release(1);
  EXPECT_EQ(window.pin_seconds(), 0);
}

}  // namespace
}  // namespace weightd
