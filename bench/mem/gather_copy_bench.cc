// weightd-bench-gather-copy: the drain's step of a push, alone: T threads each copy
// 4 MiB pieces from a buffer that stays in the cache (a received frame) into a
// gather buffer far larger than the cache (a tensor being gathered), three ways,
// interleaved, in the same process:
//   memcpy       the copy alone, glibc's;
//   copy_then_amax  memcpy, then the amax read back from the gather buffer
//                (kernels::AbsMaxFast): the drain before the fused copy;
//   copy_amax    the copy with the amax in the same pass, ordinary stores
//                (kernels::CopyAbsMaxFast);
//   stream_amax  the same with non-temporal stores (kernels::StreamCopyAbsMaxFast),
//                what a gathered tensor's running amax uses.
// One JSON line per round and T: GB/s of each, and each against memcpy.
//
//   weightd-bench-gather-copy [THREADS...]   (default: 1, 2, 4, 8, 16 up to the core count)

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "kernels/quantize_fast.h"

namespace {

using weightd::kernels::DType;
using weightd::kernels::NonFinitePolicy;

constexpr size_t kPiece = size_t{4} << 20;
constexpr size_t kGather = size_t{512} << 20;  // per thread
constexpr int kPasses = 4;                      // over each thread's gather buffer
constexpr int kRounds = 3;

using Step = std::function<void(char* dst, const char* src)>;

double Run(int threads, const std::vector<std::unique_ptr<char[]>>& src,
           const std::vector<std::unique_ptr<char[]>>& dst, const Step& step) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int p = 0; p < kPasses; ++p) {
        for (size_t at = 0; at < kGather; at += kPiece) step(dst[t].get() + at, src[t].get());
      }
    });
  }
  for (std::thread& thread : pool) thread.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return static_cast<double>(kGather) * kPasses * threads / seconds / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<int> counts;
  for (int i = 1; i < argc; ++i) counts.push_back(std::atoi(argv[i]));
  if (counts.empty()) {
    for (int t : {1, 2, 4, 8, 16}) {
      if (t <= cores) counts.push_back(t);
    }
  }
  const Step memcpy_step = [](char* d, const char* s) { std::memcpy(d, s, kPiece); };
  const Step copy_then_amax = [](char* d, const char* s) {
    std::memcpy(d, s, kPiece);
    (void)weightd::kernels::AbsMaxFast(DType::kBF16, d, kPiece / 2, NonFinitePolicy::kFail);
  };
  const Step copy_amax = [](char* d, const char* s) {
    (void)weightd::kernels::CopyAbsMaxFast(DType::kBF16, d, s, kPiece / 2, NonFinitePolicy::kFail);
  };
  const Step stream_amax = [](char* d, const char* s) {
    (void)weightd::kernels::StreamCopyAbsMaxFast(DType::kBF16, d, s, kPiece / 2, NonFinitePolicy::kFail);
  };
  for (int threads : counts) {
    std::vector<std::unique_ptr<char[]>> src, dst;
    for (int t = 0; t < threads; ++t) {
      src.emplace_back(new char[kPiece]);
      dst.emplace_back(new char[kGather]);
      for (size_t i = 0; i < kPiece; ++i) src.back()[i] = static_cast<char>((i * 131 + t) & 0x3F);  // finite BF16
      std::memset(dst.back().get(), 0, kGather);  // every page touched before timing
    }
    for (int round = 1; round <= kRounds; ++round) {
      const double base = Run(threads, src, dst, memcpy_step);
      const double then = Run(threads, src, dst, copy_then_amax);
      const double fused = Run(threads, src, dst, copy_amax);
      const double streamed = Run(threads, src, dst, stream_amax);
      std::printf(
          "{\"tool\":\"weightd-bench-gather-copy\",\"threads\":%d,\"round\":%d,\"memcpy_gbps\":%.2f,"
          "\"copy_then_amax_gbps\":%.2f,\"copy_amax_gbps\":%.2f,\"stream_amax_gbps\":%.2f,"
          "\"copy_then_amax_ratio\":%.3f,\"copy_amax_ratio\":%.3f,\"stream_amax_ratio\":%.3f}\n",
          threads, round, base, then, fused, streamed, then / base, fused / base, streamed / base);
      std::fflush(stdout);
    }
  }
  return 0;
}
