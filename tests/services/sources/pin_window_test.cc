// PinWindow against a backend that records its pins: blocks are pinned ahead of
// the segments that need them, only while their pages are in the page cache, never
// more than the window at once; readers never wait for a pin; every pin goes, on
// the pinning threads, once its segments are done.
#include "services/sources/pin_window.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "services/device/host_backend.h"

namespace weightd {
namespace {

// Counts live pins and their bytes, and the threads that unpin; a closed gate holds
// every pin in the driver until the test opens it. Otherwise the host backend.
class RecordingBackend : public HostBackend {
 public:
  RecordingBackend() : HostBackend(1, uint64_t{1} << 30) {}
  std::unique_ptr<SourcePin> PinSource(const void* data, uint64_t size) override {
    std::unique_lock<std::mutex> lock(mu);
    ++pinning;
    changed.notify_all();
    changed.wait(lock, [&] { return gate_open; });
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
      if (std::this_thread::get_id() == backend->reader) ++backend->unpins_by_reader;
      backend->changed.notify_all();
    }
    void AwaitCopies() override {}  // the host backend's copies are done when they return
    RecordingBackend* backend;
    uint64_t size;
  };
  // Waits (up to 10 s) until `done` holds, under the lock.
  template <typename F>
  bool WaitFor(F done) {
    std::unique_lock<std::mutex> lock(mu);
    return changed.wait_for(lock, std::chrono::seconds(10), done);
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu);
    gate_open = true;
    changed.notify_all();
  }
  std::mutex mu;
  std::condition_variable changed;
  bool gate_open = true;
  std::thread::id reader = std::this_thread::get_id();
  uint64_t live_bytes = 0, peak_bytes = 0;
  int pins = 0, pinning = 0, unpins_by_reader = 0;
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

// Eight segments of 1 MiB, one per block.
std::vector<PinWindow::Range> OnePerBlock(uint64_t block, int n) {
  std::vector<PinWindow::Range> segments;
  for (int i = 0; i < n; ++i) segments.push_back({0, i * block, (i + 1) * block});
  return segments;
}

TEST_F(PinWindowTest, BlocksArePinnedAheadWithinTheWindowAndUnpinnedOffTheReadersOnceTheirSegmentsAreDone) {
  RecordingBackend backend;
  const std::vector<PinWindow::Range> segments = OnePerBlock(kBlock, 8);
  PinWindow window(backend, {&map_}, segments, kBlock, 2 * kBlock, 2);
  // Nothing read yet: the window fills (two blocks) and stays full.
  ASSERT_TRUE(backend.WaitFor([&] { return backend.pins == 2; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  {
    std::lock_guard<std::mutex> lock(backend.mu);
    EXPECT_EQ(backend.pins, 2);
    EXPECT_EQ(backend.peak_bytes, 2 * kBlock);
  }
  // Segment by segment: each block is unpinned by the pinning threads once read,
  // and the room goes to a block that no reader has reached.
  for (size_t i = 0; i < segments.size(); ++i) {
    window.Start(i);
    window.Release(i);
    ASSERT_TRUE(backend.WaitFor([&] { return backend.live_bytes <= 2 * kBlock; }));
  }
  ASSERT_TRUE(backend.WaitFor([&] { return backend.live_bytes == 0; }));
  for (int i = 0; i < 1000 && window.stats().pinned_blocks + window.stats().passed_blocks < 8; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const PinWindow::Stats stats = window.stats();
  EXPECT_EQ(stats.pinned_blocks + stats.passed_blocks, 8u);
  EXPECT_EQ(stats.pinned_bytes, stats.pinned_blocks * kBlock);
  std::lock_guard<std::mutex> lock(backend.mu);
  EXPECT_EQ(static_cast<uint64_t>(backend.pins), stats.pinned_blocks);
  EXPECT_LE(backend.peak_bytes, 2 * kBlock);
  EXPECT_EQ(backend.unpins_by_reader, 0);
}

TEST_F(PinWindowTest, ReadersNeverWaitForAPinAndPassOverWhatTheyReachFirst) {
  RecordingBackend backend;
  backend.gate_open = false;  // the first pin sticks in the "driver"
  const std::vector<PinWindow::Range> segments = OnePerBlock(kBlock, 8);
  PinWindow window(backend, {&map_}, segments, kBlock, 8 * kBlock, 1);
  ASSERT_TRUE(backend.WaitFor([&] { return backend.pinning == 1; }));
  // Every segment is read and done while block 0's pin is still in the driver.
  for (size_t i = 0; i < segments.size(); ++i) {
    window.Start(i);
    window.Release(i);
  }
  backend.Open();
  // Block 0's pin lands after its segment is done: it is unpinned at once; the
  // other seven were reached by the reader first and are never pinned.
  ASSERT_TRUE(backend.WaitFor([&] { return backend.pins == 1 && backend.live_bytes == 0; }));
  for (int i = 0; i < 1000 && window.stats().passed_blocks < 7; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const PinWindow::Stats stats = window.stats();
  EXPECT_EQ(stats.pinned_blocks, 1u);
  EXPECT_EQ(stats.passed_blocks, 7u);
  std::lock_guard<std::mutex> lock(backend.mu);
  EXPECT_EQ(backend.pins, 1);
  EXPECT_EQ(backend.pinning, 1);
}

TEST_F(PinWindowTest, TheDestructorUnpinsWhatIsStillPinned) {
  RecordingBackend backend;
  const std::vector<PinWindow::Range> segments = OnePerBlock(kBlock, 3);
  {
    PinWindow window(backend, {&map_}, segments, kBlock, 2 * kBlock, 1);
    ASSERT_TRUE(backend.WaitFor([&] { return backend.pins == 2; }));
    window.Start(0);  // started, never released
  }
  std::lock_guard<std::mutex> lock(backend.mu);
  EXPECT_EQ(backend.live_bytes, 0u);
}

TEST_F(PinWindowTest, AFileOutOfThePageCacheIsNotPinned) {
  RecordingBackend backend;
  ::fdatasync(fd_);
  map_.Drop(0, kFileBytes);
  if (map_.Cached(0, kFileBytes)) GTEST_SKIP() << "this file system keeps the pages";
  std::vector<PinWindow::Range> segments = {{0, 0, kFileBytes}};
  PinWindow window(backend, {&map_}, segments, kBlock, 4 * kBlock, 2);
  window.Start(0);
  window.Release(0);
  std::lock_guard<std::mutex> lock(backend.mu);
  EXPECT_EQ(backend.pins, 0);
}

TEST_F(PinWindowTest, ABackendThatPinsNothingIsNeverAskedAndNoSegmentWaits) {
  HostBackend backend(1, uint64_t{1} << 30);
  std::vector<PinWindow::Range> segments = {{0, 0, kBlock}, {0, kBlock, 3 * kBlock}};
  PinWindow window(backend, {&map_}, segments, kBlock, kBlock, 2);
  window.Start(0);
  window.Start(1);
  window.Release(0);
  window.Release(1);
  EXPECT_EQ(window.stats().pin_seconds, 0);
  EXPECT_EQ(window.stats().pinned_blocks, 0u);
}

}  // namespace
}  // namespace weightd
