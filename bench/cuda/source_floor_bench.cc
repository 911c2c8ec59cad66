// What a path load's host side can feed one GPU, measured on checkpoint files in
// the page cache, each way a loader could take (docs/performance.md, "Path loads"):
//   pinned_h2d      plain cudaMemcpyAsync from one pinned buffer (the floor's ceiling)
//   pread_pinned    N threads pread pieces into their own pinned slots, each slot
//                   copied to the GPU on the thread's stream (the staging-ring way)
//   mmap_amax       N threads take the BF16 max |x| of the mapped files (the pass a
//                   per-tensor scale needs before any code), no copy
//   register        cudaHostRegister(read-only) of the mapped files, then copies
//                   straight from the page cache (no host copy at all), on one
//                   stream and on four
//   copy_during_register  copies from registered pages (half of the files) while
//                   another thread registers the other half: whether the driver
//                   lets a loader pin ahead of its copies or serializes the two
// Prints one JSON line.
//   weightd-bench-source-floor --threads=N [--piece-mib=8] FILE...
#include <cuda_runtime.h>
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

namespace {

#define CHECK_CUDA(x)                                                                       \
  do {                                                                                      \
    cudaError_t e = (x);                                                                    \
    if (e != cudaSuccess) {                                                                 \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e)); \
      std::exit(1);                                                                         \
    }                                                                                       \
  } while (0)

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct File {
  int fd = -1;
  uint64_t size = 0;
  const uint8_t* map = nullptr;
};

struct Piece {
  size_t file;
  uint64_t offset, size;
};

std::vector<Piece> Pieces(const std::vector<File>& files, uint64_t piece) {
  std::vector<Piece> out;
  for (size_t f = 0; f < files.size(); ++f) {
    for (uint64_t o = 0; o < files[f].size; o += piece) out.push_back({f, o, std::min(piece, files[f].size - o)});
  }
  return out;
}

template <typename Body>
double RunThreads(int threads, Body body) {
  const auto start = Clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(body, t);
  for (auto& t : pool) t.join();
  return Since(start);
}

// Largest |x| bit pattern of BF16 values (sign cleared): for finite values the
// integer order of the bits is the order of magnitudes.
uint16_t MaxAbsBits(const uint8_t* p, uint64_t n) {
  const uint16_t* v = reinterpret_cast<const uint16_t*>(p);
  const uint64_t count = n / 2;
  uint16_t m[16] = {};
  uint64_t i = 0;
  for (; i + 16 <= count; i += 16) {
    for (int k = 0; k < 16; ++k) m[k] = std::max<uint16_t>(m[k], v[i + k] & 0x7fff);
  }
  uint16_t out = 0;
  for (int k = 0; k < 16; ++k) out = std::max(out, m[k]);
  for (; i < count; ++i) out = std::max<uint16_t>(out, v[i] & 0x7fff);
  return out;
}

// The first half of the files registered, copies from them (four streams, 256 MiB
// batches, over and over) while another thread registers the second half; rates of
// both while they overlap. Everything is unregistered after.
template <typename Dst>
void OverlapRegisterAndCopy(const std::vector<File>& files, const std::vector<Piece>& pieces, Dst dst,
                            double* copy_gbps, double* register_gbps) {
  const size_t half = files.size() / 2;
  uint64_t second_bytes = 0;
  for (size_t f = 0; f < files.size(); ++f) {
    if (f < half) {
      CHECK_CUDA(cudaHostRegister(const_cast<uint8_t*>(files[f].map), files[f].size, cudaHostRegisterReadOnly));
    } else {
      second_bytes += files[f].size;
    }
  }
  std::vector<size_t> first;
  for (size_t i = 0; i < pieces.size(); ++i) {
    if (pieces[i].file < half) first.push_back(i);
  }
  cudaStream_t streams[4];
  for (cudaStream_t& s : streams) CHECK_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  std::atomic<bool> registered{false};
  const auto start = Clock::now();
  std::thread pinner([&] {
    CHECK_CUDA(cudaSetDevice(0));
    for (size_t f = half; f < files.size(); ++f) {
      CHECK_CUDA(cudaHostRegister(const_cast<uint8_t*>(files[f].map), files[f].size, cudaHostRegisterReadOnly));
    }
    *register_gbps = second_bytes / Since(start) / 1e9;
    registered = true;
  });
  uint64_t copied = 0;
  size_t k = 0;
  while (!registered) {
    for (int b = 0; b < 32; ++b, ++k) {
      const Piece& p = pieces[first[k % first.size()]];
      CHECK_CUDA(cudaMemcpyAsync(dst(k), files[p.file].map + p.offset, p.size, cudaMemcpyHostToDevice, streams[k % 4]));
      copied += p.size;
    }
    for (cudaStream_t s : streams) CHECK_CUDA(cudaStreamSynchronize(s));
  }
  *copy_gbps = copied / Since(start) / 1e9;
  pinner.join();
  for (cudaStream_t s : streams) CHECK_CUDA(cudaStreamDestroy(s));
  for (const File& f : files) CHECK_CUDA(cudaHostUnregister(const_cast<uint8_t*>(f.map)));
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 8;
  uint64_t piece = 8ull << 20;
  std::vector<std::string> names;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--threads=", 10) == 0) {
      threads = std::atoi(argv[i] + 10);
    } else if (std::strncmp(argv[i], "--piece-mib=", 12) == 0) {
      piece = std::strtoull(argv[i] + 12, nullptr, 10) << 20;
    } else {
      names.emplace_back(argv[i]);
    }
  }
  std::vector<File> files;
  uint64_t total = 0;
  for (const std::string& n : names) {
    File f;
    f.fd = ::open(n.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (f.fd < 0 || ::fstat(f.fd, &st) != 0) {
      std::perror(n.c_str());
      return 1;
    }
    f.size = static_cast<uint64_t>(st.st_size);
    total += f.size;
    files.push_back(f);
  }
  const std::vector<Piece> pieces = Pieces(files, piece);
  CHECK_CUDA(cudaSetDevice(0));
  const uint64_t device_bytes = 2ull << 30;
  uint8_t* device = nullptr;
  CHECK_CUDA(cudaMalloc(&device, device_bytes));
  auto dst = [&](uint64_t i) { return device + (i * piece) % (device_bytes - piece); };

  // Plain pinned H2D of the same number of bytes, 64 MiB copies.
  double pinned_h2d;
  {
    const uint64_t block = 64ull << 20;
    uint8_t* host = nullptr;
    CHECK_CUDA(cudaHostAlloc(&host, block, cudaHostAllocDefault));
    std::memset(host, 1, block);
    cudaStream_t s;
    CHECK_CUDA(cudaStreamCreate(&s));
    CHECK_CUDA(cudaMemcpyAsync(device, host, block, cudaMemcpyHostToDevice, s));
    CHECK_CUDA(cudaStreamSynchronize(s));
    const auto start = Clock::now();
    for (uint64_t done = 0; done < total; done += block) {
      CHECK_CUDA(cudaMemcpyAsync(device + (done % (device_bytes - block)), host, std::min(block, total - done),
                                 cudaMemcpyHostToDevice, s));
    }
    CHECK_CUDA(cudaStreamSynchronize(s));
    pinned_h2d = total / Since(start) / 1e9;
    CHECK_CUDA(cudaStreamDestroy(s));
    CHECK_CUDA(cudaFreeHost(host));
  }

  // pread into per-thread pinned slots, each copied on the thread's own stream.
  double pread_pinned;
  {
    std::atomic<size_t> next{0};
    const double took = RunThreads(threads, [&](int) {
      CHECK_CUDA(cudaSetDevice(0));
      cudaStream_t s;
      CHECK_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
      uint8_t* slot[2];
      cudaEvent_t done[2];
      for (int k = 0; k < 2; ++k) {
        CHECK_CUDA(cudaHostAlloc(&slot[k], piece, cudaHostAllocDefault));
        CHECK_CUDA(cudaEventCreateWithFlags(&done[k], cudaEventDisableTiming));
        CHECK_CUDA(cudaEventRecord(done[k], s));
      }
      int k = 0;
      for (size_t i = next++; i < pieces.size(); i = next++, k ^= 1) {
        const Piece& p = pieces[i];
        CHECK_CUDA(cudaEventSynchronize(done[k]));
        for (uint64_t got = 0; got < p.size;) {
          ssize_t n = ::pread(files[p.file].fd, slot[k] + got, p.size - got, static_cast<off_t>(p.offset + got));
          if (n <= 0) std::exit(2);
          got += static_cast<uint64_t>(n);
        }
        CHECK_CUDA(cudaMemcpyAsync(dst(i), slot[k], p.size, cudaMemcpyHostToDevice, s));
        CHECK_CUDA(cudaEventRecord(done[k], s));
      }
      CHECK_CUDA(cudaStreamSynchronize(s));
      for (int j = 0; j < 2; ++j) {
        CHECK_CUDA(cudaFreeHost(slot[j]));
        CHECK_CUDA(cudaEventDestroy(done[j]));
      }
      CHECK_CUDA(cudaStreamDestroy(s));
    });
    pread_pinned = total / took / 1e9;
  }

  // Map every file; the max |x| pass over all of it.
  double map_seconds;
  {
    const auto start = Clock::now();
    for (File& f : files) {
      void* m = ::mmap(nullptr, f.size, PROT_READ, MAP_SHARED | MAP_POPULATE, f.fd, 0);
      if (m == MAP_FAILED) {
        std::perror("mmap");
        return 1;
      }
      f.map = static_cast<const uint8_t*>(m);
    }
    map_seconds = Since(start);
  }
  double mmap_amax;
  uint16_t amax_bits = 0;
  {
    std::atomic<size_t> next{0};
    std::vector<uint16_t> found(static_cast<size_t>(threads), 0);
    const double took = RunThreads(threads, [&](int t) {
      for (size_t i = next++; i < pieces.size(); i = next++) {
        const Piece& p = pieces[i];
        found[static_cast<size_t>(t)] = std::max(found[static_cast<size_t>(t)], MaxAbsBits(files[p.file].map + p.offset, p.size));
      }
    });
    for (uint16_t f : found) amax_bits = std::max(amax_bits, f);
    mmap_amax = total / took / 1e9;
  }

  // Register the mappings read-only with the driver; copy straight from them.
  int read_only = 0;
  cudaDeviceGetAttribute(&read_only, cudaDevAttrHostRegisterReadOnlySupported, 0);
  double register_gbps = 0, registered_h2d = 0, registered_h2d_one_stream = 0, unregister_gbps = 0;
  double copy_during_register = 0, register_during_copy = 0;
  std::string register_error;
  if (read_only) {
    const auto start = Clock::now();
    bool ok = true;
    for (File& f : files) {
      cudaError_t e = cudaHostRegister(const_cast<uint8_t*>(f.map), f.size, cudaHostRegisterReadOnly);
      if (e != cudaSuccess) {
        register_error = cudaGetErrorString(e);
        ok = false;
        break;
      }
    }
    register_gbps = total / Since(start) / 1e9;
    if (ok) {
      // The same copies on one stream (a staging ring's) and on four.
      for (const int streams : {1, 4}) {
        std::atomic<size_t> next{0};
        const double took = RunThreads(streams, [&](int) {
          CHECK_CUDA(cudaSetDevice(0));
          cudaStream_t s;
          CHECK_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
          for (size_t i = next++; i < pieces.size(); i = next++) {
            const Piece& p = pieces[i];
            CHECK_CUDA(cudaMemcpyAsync(dst(i), files[p.file].map + p.offset, p.size, cudaMemcpyHostToDevice, s));
          }
          CHECK_CUDA(cudaStreamSynchronize(s));
          CHECK_CUDA(cudaStreamDestroy(s));
        });
        (streams == 1 ? registered_h2d_one_stream : registered_h2d) = total / took / 1e9;
      }
      const auto unreg = Clock::now();
      for (File& f : files) CHECK_CUDA(cudaHostUnregister(const_cast<uint8_t*>(f.map)));
      unregister_gbps = total / Since(unreg) / 1e9;
      if (files.size() >= 2) OverlapRegisterAndCopy(files, pieces, dst, &copy_during_register, &register_during_copy);
    }
  } else {
    register_error = "cudaDevAttrHostRegisterReadOnlySupported is 0";
  }
  std::printf(
      "{\"threads\": %d, \"piece_mib\": %llu, \"bytes\": %llu, \"pinned_h2d_gbps\": %.2f, \"pread_pinned_gbps\": %.2f, "
      "\"map_populate_seconds\": %.3f, \"mmap_amax_gbps\": %.2f, \"amax_bits\": %u, \"register_gbps\": %.2f, "
      "\"registered_h2d_gbps\": %.2f, \"registered_h2d_one_stream_gbps\": %.2f, \"unregister_gbps\": %.2f, "
      "\"copy_during_register_gbps\": %.2f, \"register_during_copy_gbps\": %.2f, \"register_error\": \"%s\"}\n",
      threads, static_cast<unsigned long long>(piece >> 20), static_cast<unsigned long long>(total), pinned_h2d,
      pread_pinned, map_seconds, mmap_amax, amax_bits, register_gbps, registered_h2d, registered_h2d_one_stream,
      unregister_gbps, copy_during_register, register_during_copy, register_error.c_str());
  return 0;
}
