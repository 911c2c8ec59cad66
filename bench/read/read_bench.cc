// The ceiling of reading checkpoint files from the page cache, for comparing a
// path load against: N threads read the files' bytes in 8 MiB pieces with pread
// into reused buffers, and, separately, map them and sum one byte per 4 KiB page
// (what a zero-copy reader would pay in page faults). Prints one JSON line.
//   weightd-bench-read --threads=N FILE...
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Piece {
  int fd;
  uint64_t offset, size;
};

constexpr uint64_t kPiece = 8ull << 20;

template <typename Body>
double RunThreads(int threads, const std::vector<Piece>& pieces, Body body) {
  std::atomic<size_t> next{0};
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      std::vector<char> buffer(kPiece);
      for (size_t i = next++; i < pieces.size(); i = next++) body(pieces[i], buffer);
    });
  }
  for (auto& t : pool) t.join();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 8;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--threads=", 10) == 0) {
      threads = std::atoi(argv[i] + 10);
    } else {
      files.emplace_back(argv[i]);
    }
  }
  std::vector<Piece> pieces;
  std::vector<std::pair<int, uint64_t>> opened;
  uint64_t total = 0;
  for (const std::string& f : files) {
    int fd = ::open(f.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || ::fstat(fd, &st) != 0) {
      std::perror(f.c_str());
      return 1;
    }
    opened.emplace_back(fd, static_cast<uint64_t>(st.st_size));
    for (uint64_t o = 0; o < static_cast<uint64_t>(st.st_size); o += kPiece) {
      pieces.push_back({fd, o, std::min<uint64_t>(kPiece, st.st_size - o)});
    }
    total += st.st_size;
  }
  std::atomic<uint64_t> checksum{0};
  const double pread_s = RunThreads(threads, pieces, [&](const Piece& p, std::vector<char>& buffer) {
    uint64_t done = 0;
    while (done < p.size) {
      ssize_t n = ::pread(p.fd, buffer.data(), p.size - done, static_cast<off_t>(p.offset + done));
      if (n <= 0) std::exit(2);
      done += static_cast<uint64_t>(n);
    }
    checksum += static_cast<unsigned char>(buffer[0]);
  });
  std::vector<const char*> maps;
  for (auto [fd, size] : opened) {
    void* m = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) return 3;
    maps.push_back(static_cast<const char*>(m));
  }
  const double mmap_s = RunThreads(threads, pieces, [&](const Piece& p, std::vector<char>&) {
    size_t file = 0;
    while (opened[file].first != p.fd) ++file;
    uint64_t sum = 0;
    for (uint64_t o = 0; o < p.size; o += 4096) sum += static_cast<unsigned char>(maps[file][p.offset + o]);
    checksum += sum;
  });
  std::printf("{\"threads\": %d, \"bytes\": %llu, \"pread_gbps\": %.2f, \"mmap_touch_gbps\": %.2f, \"checksum\": %llu}\n",
              threads, static_cast<unsigned long long>(total), total / pread_s / 1e9, total / mmap_s / 1e9,
              static_cast<unsigned long long>(checksum.load()));
  return 0;
}
