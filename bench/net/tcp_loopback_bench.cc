// weightd-bench-tcp: raw TCP loopback throughput, the ceiling a gRPC push on the
// same machine is compared with: N sender threads each write bytes/N from a 4 MiB
// buffer to their own receiver thread over 127.0.0.1, which reads and discards.
// With --land-bytes=B the receivers instead read into successive places of
// landing buffers of B bytes in all (each stream its share, wrapping), touched
// before the clock starts: every received byte is written to DRAM, as any real
// receiver must write it (a daemon's push, a peer pull), where reading into one
// 4 MiB buffer stays in the last-level cache. Prints one JSON line.
//
//   weightd-bench-tcp --streams=8 --bytes=16000000000 [--land-bytes=4294967296]

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "base/process_cpu.h"
#include "bench/net/flag_value.h"

namespace {

constexpr size_t kBufferBytes = 4 << 20;

[[noreturn]] void Die(const char* what) {
  std::perror(what);
  std::exit(1);
}

void Send(uint16_t port, uint64_t bytes) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) Die("connect");
  std::vector<char> buffer(kBufferBytes, 'w');
  while (bytes > 0) {
    const ssize_t n = ::send(fd, buffer.data(), std::min<uint64_t>(bytes, buffer.size()), 0);
    if (n <= 0) Die("send");
    bytes -= static_cast<uint64_t>(n);
  }
  ::close(fd);
}

void Receive(int fd, std::vector<char>* landing) {
  std::vector<char> buffer(kBufferBytes);
  if (landing == nullptr || landing->size() < kBufferBytes) {
    while (::recv(fd, buffer.data(), buffer.size(), 0) > 0) {
    }
  } else {
    size_t at = 0;
    for (;;) {
      if (landing->size() - at < kBufferBytes) at = 0;
      const ssize_t n = ::recv(fd, landing->data() + at, kBufferBytes, 0);
      if (n <= 0) break;
      at += static_cast<size_t>(n);
    }
  }
  ::close(fd);
}

}  // namespace

int main(int argc, char** argv) {
  using weightd::bench::FlagValue;
  const uint64_t streams = std::max<uint64_t>(1, FlagValue(argc, argv, "streams", 1));
  const uint64_t bytes = FlagValue(argc, argv, "bytes", uint64_t{4} << 30);
  const uint64_t land_bytes = FlagValue(argc, argv, "land-bytes", 0);
  // Touched now, so page faults are not timed.
  std::vector<std::vector<char>> landing(land_bytes > 0 ? streams : 0);
  for (std::vector<char>& l : landing) l.assign(land_bytes / streams, '\0');
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (listener < 0 || ::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listener, static_cast<int>(streams)) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    Die("listen");
  }
  const uint16_t port = ntohs(addr.sin_port);
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (uint64_t s = 0; s < streams; ++s) {
    threads.emplace_back(Send, port, bytes / streams + (s < bytes % streams ? 1 : 0));
  }
  for (uint64_t s = 0; s < streams; ++s) {
    const int fd = ::accept(listener, nullptr, nullptr);
    if (fd < 0) Die("accept");
    threads.emplace_back(Receive, fd, landing.empty() ? nullptr : &landing[s]);
  }
  for (std::thread& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("{\"tool\":\"weightd-bench-tcp\",\"streams\":%llu,\"bytes\":%llu,\"land_bytes\":%llu,"
              "\"seconds\":%.4f,\"gbps\":%.3f,\"cpu_seconds\":%.2f}\n",
              static_cast<unsigned long long>(streams), static_cast<unsigned long long>(bytes),
              static_cast<unsigned long long>(land_bytes), seconds, static_cast<double>(bytes) / seconds / 1e9,
              weightd::ProcessCpuSeconds());
  return 0;
}
