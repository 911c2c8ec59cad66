// A path load's host memory does not grow with its tensors: the shards are mapped
// and tensors are handed to the devices as views of the page cache, so the
// daemon's anonymous memory grows by at most the staging ring (none on host
// devices), the read threads' segments and a fixed 64 MiB, here on an 8B-shaped
// checkpoint cut to one layer (its MLP tensors are 112 MiB each, the embedding and
// output 1002 MiB each). The file pages a load maps are the kernel's page cache,
// not the daemon's memory, and are not counted (RssFile); the host devices' arenas
// are shared memory (RssShmem), the devices' memory, not counted either.
#include <atomic>
#include <chrono>
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

}  // namespace
}  // namespace weightd::testing
