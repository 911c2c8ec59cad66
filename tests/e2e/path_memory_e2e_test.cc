// A path load's host memory does not grow with its tensors: the shards are mapped
// and tensors are handed to the devices as views of the page cache, so the
// daemon's anonymous memory grows by at most the staging ring (none on host
// devices), the read threads' segments and a fixed 64 MiB, here on an 8B-shaped
// checkpoint cut to one layer (its MLP tensors are 112 MiB each, the embedding and
// output 1002 MiB each). The file pages a load maps are the kernel's page cache,
// not the daemon's memory, and are not counted (RssFile); the host devices' arenas
// are shared memory (RssShmem), the devices' memory, not counted either.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <vector>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "tests/e2e/daemon_process.h"
#include "tests/e2e/sanitizers.h"

namespace weightd::testing {
namespace {

// The daemon's anonymous resident bytes (RssAnon of /proc/PID/status); -1 if unknown.
double AnonymousBytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("RssAnon:", 0) == 0) return std::stod(line.substr(8)) * 1024;
  }
  return -1;
}

TEST(PathMemoryE2ETest, AnEightBShapedPathLoadKeepsHostMemoryToTheSegmentsOfItsReadThreads) {
  if (kAddressSanitizer || kThreadSanitizer) GTEST_SKIP() << "a sanitizer keeps memory resident on its own";
  constexpr int kReadThreads = 4;
  constexpr double kSegmentBytes = 64.0 * (1 << 20);  // PathSourceOptions::segment_bytes
  constexpr double kFixedBytes = 64.0 * (1 << 20);
  DaemonProcess daemon;
  daemon.Start({"--read-threads=" + std::to_string(kReadThreads)});
  ASSERT_EQ(daemon.GenerateTiny("llama", {"--preset=8b", "--layers=1", "--shards=2"}).exit_code, 0);
  const double before = AnonymousBytes(daemon.pid());
  ASSERT_GT(before, 0);

  std::atomic<bool> done{false};
  std::atomic<double> peak{before};
  std::thread sampler([&] {
    while (!done) {
      const double now = AnonymousBytes(daemon.pid());
      if (now > peak) peak = now;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  CommandResult load = daemon.Ctl({"load", "llama", "--path=llama", "--scheme=per-tensor"});
  done = true;
  sampler.join();
  ASSERT_EQ(load.exit_code, 0) << load.err;
  // The load happened (about 2.4 GB of tensors onto the host device), then the bound.
  EXPECT_GT(daemon.UsedBytes(), 2e9);
  const double bound = kReadThreads * kSegmentBytes + kFixedBytes;
  std::cout << "anonymous memory growth during the load: " << (peak - before) / (1 << 20) << " MiB\n";
  EXPECT_LE(peak - before, bound) << "anonymous memory grew by " << (peak - before) / (1 << 20)
                                  << " MiB during the load; bound " << bound / (1 << 20) << " MiB";
}

// Pages of `path` in the page cache, and all of its pages (mincore of a mapping).
std::pair<size_t, size_t> CachedPages(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || ::fstat(fd, &st) != 0 || st.st_size == 0) return {0, 0};
  void* map = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_SHARED, fd, 0);
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> resident((static_cast<size_t>(st.st_size) + page - 1) / page);
  size_t cached = 0;
  if (map != MAP_FAILED && ::mincore(map, static_cast<size_t>(st.st_size), resident.data()) == 0) {
    for (unsigned char r : resident) cached += r & 1;
  }
  if (map != MAP_FAILED) ::munmap(map, static_cast<size_t>(st.st_size));
  ::close(fd);
  return {cached, resident.size()};
}

// Writes `path` back and asks the kernel to drop it from the page cache.
void Evict(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ::fdatasync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

// The number after `"key":` in the last line of `log` that has it; -1 if none.
long LastLogNumber(const std::string& log, const std::string& key) {
  const std::string needle = "\"" + key + "\":";
  const size_t at = log.rfind(needle);
  if (at == std::string::npos) return -1;
  return std::strtol(log.c_str() + at + needle.size(), nullptr, 10);
}

// A checkpoint that is not in the page cache (a node's first load of a model) is
// read from disk once and does not stay in the page cache: a model read once must
// not push out what the node had cached. Its bytes are the CPU reference's. By
// default the segments are read with O_DIRECT (past the page cache); with
// --direct-cold-reads=false through it, and dropped after.
void LoadColdCheckpoint(bool direct) {
  DaemonProcess daemon;
  const std::string checkpoint = daemon.model_root() + "/small";
  ASSERT_EQ(daemon.GenerateTiny("small", {"--preset=small", "--shards=2"}).exit_code, 0);
  std::vector<std::string> shards;
  for (const auto& e : std::filesystem::directory_iterator(checkpoint)) {
    if (e.path().extension() == ".safetensors") shards.push_back(e.path().string());
  }
  ASSERT_EQ(shards.size(), 2u);
  for (const std::string& f : shards) Evict(f);
  for (const std::string& f : shards) {
    auto [cached, pages] = CachedPages(f);
    // Some file systems (tmpfs) keep every page: nothing to test there.
    if (cached * 2 > pages) GTEST_SKIP() << f << ": the kernel keeps " << cached << " of " << pages << " pages";
  }
  daemon.Start({"--read-threads=2", "--log-level=debug", direct ? "--direct-cold-reads=true" : "--direct-cold-reads=false"});
  CommandResult load = daemon.Ctl({"load", "m", "--path=small"});
  ASSERT_EQ(load.exit_code, 0) << load.err;
  // The read threads log their totals once they are done, which may be just after
  // the load is READY.
  for (int i = 0; i < 600 && daemon.log().find("\"direct_segments\"") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const long cold = LastLogNumber(daemon.log(), "cold_segments");
  const long read_direct = LastLogNumber(daemon.log(), "direct_segments");
  EXPECT_GT(cold, 0) << "no segment was read cold";
  if (direct) {
    EXPECT_EQ(read_direct, cold) << "every cold segment of this small checkpoint fits a reader's buffer";
  } else {
    EXPECT_EQ(read_direct, 0);
  }
  for (const std::string& f : shards) {
    auto [cached, pages] = CachedPages(f);
    // The headers and the partial pages at the ends of segments may stay.
    EXPECT_LT(cached * 10, pages) << f << ": " << cached << " of " << pages << " pages stayed in the page cache";
  }
  ASSERT_EQ(daemon.Ctl({"export", "m", daemon.dir() + "/out"}).exit_code, 0);
  CommandResult verify = daemon.Ctl({"verify", checkpoint, daemon.dir() + "/out"});
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
}

TEST(PathMemoryE2ETest, AColdCheckpointIsReadOnceWithODirectPastThePageCache) { LoadColdCheckpoint(true); }

TEST(PathMemoryE2ETest, AColdCheckpointReadThroughThePageCacheIsDroppedFromItAfter) { LoadColdCheckpoint(false); }

}  // namespace
}  // namespace weightd::testing
