// The host side of a per-tensor path load, without a GPU: what N read threads do to
// BF16 tensors in the page cache before the copy engine takes them, each route in the
// same process on freshly mapped files (page faults included, as in a load):
//   copy_only       each tensor copied into the staging slots (8 MiB slots of one
//                   64 MiB ring, which stays in the last-level cache): the floor, and
//                   what per-channel and block scales cost with --scales-from-slots
//   amax_then_copy  the whole tensor's max |x| first (the per-tensor scale), then the
//                   copies: the default per-tensor route, two reads of every byte
//   parked          --park-per-tensor: the first half copied with its amax taken in
//                   the same pass (kernels::CopyAbsMaxFast), the amax of the other
//                   half, then its copies: 1.5 reads per byte
//   parked_backward as parked, the rest copied last slot first: the bytes its amax
//                   pass read last are still in the cache when the copies start
//   rest_in_arena   --park-rest-in-arena: every byte copied with its amax taken in the
//                   same pass (the parked rows and the rest alike): one read per byte
//   channel_scales_then_copy   per-channel scales (rows of 4096) in a pass over the
//                   tensor, then the copies: the default per-channel route
//   channel_scales_in_slots    --scales-from-slots: each slot filled with whole rows,
//                   their scales taken in the pass that copies them
//                   (CopyTakingChunkScales, as the ring does)
// Each route runs `--rounds` times, interleaved; the best of each is reported, and
// the ratios to the default route of its scheme. One scale pass per thread, as with
// 16 read threads on 16 cores. Prints one JSON line.
//   weightd-bench-host-feed --threads=N [--tensor-mib=112] [--rounds=3] FILE...
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "kernels/quantize_fast.h"
#include "services/device/chunk_scales.h"

namespace {

constexpr uint64_t kSlot = 8ull << 20;
constexpr uint64_t kSlots = 8;

struct Tensor {
  size_t file;
  uint64_t offset, size;
};

struct Mapped {
  const uint8_t* data;
  uint64_t size;
};

enum class Route { kCopyOnly, kAmaxThenCopy, kParked, kChannelThenCopy, kChannelInSlots, kRestInArena, kParkedBackward };
constexpr int kRoutes = 7;
constexpr uint64_t kCols = 4096;  // per-channel rows

// Copies [src, +n) into slots of the shared ring, in turn.
void CopyIntoSlots(std::vector<uint8_t>& ring, std::atomic<uint64_t>& next, const uint8_t* src, uint64_t n) {
  for (uint64_t done = 0; done < n; done += kSlot) {
    uint8_t* slot = ring.data() + (next++ % kSlots) * kSlot;
    std::memcpy(slot, src + done, std::min(kSlot, n - done));
  }
}

// The same, the last slot's bytes first.
void CopyIntoSlotsBackward(std::vector<uint8_t>& ring, std::atomic<uint64_t>& next, const uint8_t* src, uint64_t n) {
  for (uint64_t end = n; end > 0;) {
    const uint64_t begin = end > kSlot ? end - kSlot : 0;
    uint8_t* slot = ring.data() + (next++ % kSlots) * kSlot;
    std::memcpy(slot, src + begin, end - begin);
    end = begin;
  }
}

float FeedTensor(Route route, const uint8_t* src, uint64_t size, std::vector<uint8_t>& ring,
                 std::atomic<uint64_t>& next) {
  using weightd::kernels::DType;
  using weightd::kernels::NonFinitePolicy;
  float amax = 0.0f;
  uint64_t parked = 0;
  if (route == Route::kChannelThenCopy || route == Route::kChannelInSlots) {
    const uint64_t rows = size / 2 / kCols;
    const weightd::kernels::Tiling tiling =
        weightd::kernels::TilingFor(weightd::kernels::Scheme::kPerChannel, rows, kCols);
    std::vector<float> scales(rows);
    if (route == Route::kChannelThenCopy) {
      (void)weightd::kernels::TileScalesFast(weightd::kernels::Scheme::kPerChannel, DType::kBF16, src, tiling,
                                             NonFinitePolicy::kSaturate, scales.data(), 1);
      CopyIntoSlots(ring, next, src, size);
    } else {
      const uint64_t per_slot = kSlot / (kCols * 2);
      double copy_seconds = 0;
      for (uint64_t row = 0; row < rows; row += per_slot) {
        uint8_t* slot = ring.data() + (next++ % kSlots) * kSlot;
        (void)weightd::CopyTakingChunkScales(weightd::kernels::Scheme::kPerChannel, DType::kBF16, tiling, row,
                                             std::min(per_slot, rows - row), src, slot, NonFinitePolicy::kSaturate,
                                             scales.data() + row, copy_seconds);
      }
    }
    return scales.empty() ? 0.0f : scales[0];
  }
  if (route == Route::kParked || route == Route::kParkedBackward || route == Route::kRestInArena) {
    // Whole slots of the first half; with the rest in the arena, all of it.
    parked = route != Route::kRestInArena ? size / 2 / kSlot * kSlot : size / kSlot * kSlot;
    for (uint64_t done = 0; done < parked; done += kSlot) {
      uint8_t* slot = ring.data() + (next++ % kSlots) * kSlot;
      amax = std::max(amax, *weightd::kernels::CopyAbsMaxFast(DType::kBF16, slot, src + done, kSlot / 2,
                                                             NonFinitePolicy::kSaturate));
    }
  }
  if (route == Route::kRestInArena) {
    const uint64_t tail = size - parked;  // what is left of the last slot
    if (tail > 0) {
      uint8_t* slot = ring.data() + (next++ % kSlots) * kSlot;
      amax = std::max(amax, *weightd::kernels::CopyAbsMaxFast(DType::kBF16, slot, src + parked, tail / 2,
                                                             NonFinitePolicy::kSaturate));
    }
    return amax;
  }
  if (route != Route::kCopyOnly) {
    amax = std::max(amax, *weightd::kernels::AbsMaxFast(DType::kBF16, src + parked, (size - parked) / 2,
                                                       NonFinitePolicy::kSaturate));
  }
  if (route == Route::kParkedBackward) {
    CopyIntoSlotsBackward(ring, next, src + parked, size - parked);
  } else {
    CopyIntoSlots(ring, next, src + parked, size - parked);
  }
  return amax;
}

// Seconds for `threads` threads to feed every tensor (taken in turn) of freshly mapped files.
double Run(Route route, int threads, const std::vector<int>& fds, const std::vector<uint64_t>& sizes,
           uint64_t tensor_bytes) {
  std::vector<Mapped> maps;
  std::vector<Tensor> tensors;
  for (size_t f = 0; f < fds.size(); ++f) {
    void* p = ::mmap(nullptr, sizes[f], PROT_READ, MAP_SHARED, fds[f], 0);
    if (p == MAP_FAILED) {
      std::perror("mmap");
      std::exit(1);
    }
    maps.push_back({static_cast<const uint8_t*>(p), sizes[f]});
    for (uint64_t at = 0; at + tensor_bytes <= sizes[f]; at += tensor_bytes) tensors.push_back({f, at, tensor_bytes});
  }
  std::vector<uint8_t> ring(kSlot * kSlots, 1);
  std::atomic<uint64_t> next_slot{0};
  std::atomic<size_t> next_tensor{0};
  std::atomic<uint32_t> sink{0};
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (size_t i = next_tensor++; i < tensors.size(); i = next_tensor++) {
        const Tensor& x = tensors[i];
        const float amax = FeedTensor(route, maps[x.file].data + x.offset, x.size, ring, next_slot);
        sink += static_cast<uint32_t>(amax);
      }
    });
  }
  for (std::thread& t : pool) t.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (const Mapped& m : maps) ::munmap(const_cast<uint8_t*>(m.data), m.size);
  if (sink.load() == 0xFFFFFFFFu) std::puts("");  // keeps the amax live
  return seconds;
}

uint64_t FlagValue(const char* arg, const char* name, uint64_t fallback) {
  const size_t n = std::strlen(name);
  return std::strncmp(arg, name, n) == 0 ? std::strtoull(arg + n, nullptr, 10) : fallback;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 1, rounds = 3;
  uint64_t tensor_mib = 112;
  std::vector<int> fds;
  std::vector<uint64_t> sizes;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--", 2) == 0) {
      threads = static_cast<int>(FlagValue(argv[i], "--threads=", threads));
      rounds = static_cast<int>(FlagValue(argv[i], "--rounds=", rounds));
      tensor_mib = FlagValue(argv[i], "--tensor-mib=", tensor_mib);
      continue;
    }
    const int fd = ::open(argv[i], O_RDONLY);
    struct stat st;
    if (fd < 0 || ::fstat(fd, &st) != 0) {
      std::perror(argv[i]);
      return 1;
    }
    fds.push_back(fd);
    sizes.push_back(static_cast<uint64_t>(st.st_size));
  }
  const uint64_t tensor_bytes = std::max<uint64_t>(1, tensor_mib) << 20;
  uint64_t bytes = 0;
  for (uint64_t s : sizes) bytes += s / tensor_bytes * tensor_bytes;
  if (fds.empty() || threads < 1 || bytes == 0) {
    std::fprintf(stderr, "usage: weightd-bench-host-feed --threads=N [--tensor-mib=112] [--rounds=3] FILE...\n");
    return 2;
  }
  weightd::kernels::SetDefaultQuantizeThreads(1);
  double best[kRoutes] = {1e30, 1e30, 1e30, 1e30, 1e30, 1e30, 1e30};
  Run(Route::kCopyOnly, threads, fds, sizes, tensor_bytes);  // warms the page cache
  for (int r = 0; r < rounds; ++r) {
    for (Route route : {Route::kCopyOnly, Route::kAmaxThenCopy, Route::kParked, Route::kChannelThenCopy,
                        Route::kChannelInSlots, Route::kRestInArena, Route::kParkedBackward}) {
      double& b = best[static_cast<int>(route)];
      b = std::min(b, Run(route, threads, fds, sizes, tensor_bytes));
    }
  }
  auto gbps = [&](double s) { return static_cast<double>(bytes) / s / 1e9; };
  std::printf(
      "{\"threads\":%d,\"tensor_mib\":%llu,\"bytes\":%llu,\"copy_only_gbps\":%.2f,\"amax_then_copy_gbps\":%.2f,"
      "\"parked_gbps\":%.2f,\"channel_scales_then_copy_gbps\":%.2f,\"channel_scales_in_slots_gbps\":%.2f,"
      "\"rest_in_arena_gbps\":%.2f,\"parked_backward_gbps\":%.2f,\"parked_over_amax_then_copy\":%.3f,"
      "\"parked_backward_over_parked\":%.3f,\"channel_in_slots_over_then_copy\":%.3f,"
      "\"rest_in_arena_over_amax_then_copy\":%.3f,\"copy_only_over_amax_then_copy\":%.3f}\n",
      threads, static_cast<unsigned long long>(tensor_mib), static_cast<unsigned long long>(bytes), gbps(best[0]),
      gbps(best[1]), gbps(best[2]), gbps(best[3]), gbps(best[4]), gbps(best[5]), gbps(best[6]), best[1] / best[2],
      best[2] / best[6],
      best[3] / best[4], best[1] / best[5], best[1] / best[0]);
  return 0;
}
