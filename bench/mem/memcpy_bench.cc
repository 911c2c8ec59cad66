// weightd-bench-memcpy: the host's memory bandwidth, the ceiling under every
// copy a push or a load makes: T threads each memcpy their own 256 MiB buffer 8
// times, for T = 1, 2, 4, 8, 12, 16 (at most the core count). One JSON line per T,
// GB/s of bytes copied (each is read once and written once).
//
//   weightd-bench-memcpy

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

int main() {
  constexpr size_t kBytes = size_t{256} << 20;
  constexpr int kRepeats = 8;
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int threads : {1, 2, 4, 8, 12, 16}) {
    if (threads > cores) break;
    std::vector<std::unique_ptr<char[]>> src, dst;
    for (int t = 0; t < threads; ++t) {
      src.emplace_back(new char[kBytes]);
      dst.emplace_back(new char[kBytes]);
      std::memset(src.back().get(), t + 1, kBytes);  // every page touched before timing
      std::memset(dst.back().get(), 0, kBytes);
    }
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        for (int r = 0; r < kRepeats; ++r) std::memcpy(dst[t].get(), src[t].get(), kBytes);
      });
    }
    for (std::thread& thread : pool) thread.join();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("{\"tool\":\"weightd-bench-memcpy\",\"threads\":%d,\"gbps\":%.1f}\n", threads,
                static_cast<double>(kBytes) * kRepeats * threads / seconds / 1e9);
  }
  return 0;
}
