// weightd-bench-tcp: raw TCP loopback throughput, the ceiling a gRPC push on the
// same machine is compared with: N sender threads each write bytes/N from a 4 MiB
// buffer to their own receiver thread over 127.0.0.1, which reads and discards.
// With --land-bytes=B the receivers instead read into successive places of
// landing buffers of B bytes in all (each stream its share, wrapping), touched
// before the clock starts: every received byte is written to DRAM, as any real
// receiver must write it (a daemon's push, a peer pull), where reading into one
// 4 MiB buffer stays in the last-level cache. --unix=1 streams over a Unix socket
// instead of TCP (a push over the daemon's Unix socket); --via-buffer=1 receives
// into a 4 MiB buffer and copies each read into the landing buffers (a receiver
// that parses framed messages before it places their bytes). Prints one JSON line.
//
//   weightd-bench-tcp --streams=8 --bytes=16000000000 [--land-bytes=4294967296] [--unix=1] [--via-buffer=1]

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
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

// Where the receivers listen: 127.0.0.1 and a port, or a Unix socket's path.
struct Endpoint {
  bool unix_socket = false;
  sockaddr_in inet{};
  sockaddr_un local{};
  int family() const { return unix_socket ? AF_UNIX : AF_INET; }
  const sockaddr* addr() const {
    return unix_socket ? reinterpret_cast<const sockaddr*>(&local) : reinterpret_cast<const sockaddr*>(&inet);
  }
  socklen_t size() const { return unix_socket ? sizeof local : sizeof inet; }
};

void Send(const Endpoint* endpoint, uint64_t bytes) {
  const int fd = ::socket(endpoint->family(), SOCK_STREAM, 0);
  if (fd < 0 || ::connect(fd, endpoint->addr(), endpoint->size()) != 0) Die("connect");
  std::vector<char> buffer(kBufferBytes, 'w');
  while (bytes > 0) {
    const ssize_t n = ::send(fd, buffer.data(), std::min<uint64_t>(bytes, buffer.size()), 0);
    if (n <= 0) Die("send");
    bytes -= static_cast<uint64_t>(n);
  }
  ::close(fd);
}

void Receive(int fd, std::vector<char>* landing, bool via_buffer) {
  std::vector<char> buffer(kBufferBytes);
  if (landing == nullptr || landing->size() < kBufferBytes) {
    while (::recv(fd, buffer.data(), buffer.size(), 0) > 0) {
    }
  } else {
    size_t at = 0;
    for (;;) {
      if (landing->size() - at < kBufferBytes) at = 0;
      char* to = landing->data() + at;
      const ssize_t n = ::recv(fd, via_buffer ? buffer.data() : to, kBufferBytes, 0);
      if (n <= 0) break;
      if (via_buffer) std::memcpy(to, buffer.data(), static_cast<size_t>(n));
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
  const bool via_buffer = FlagValue(argc, argv, "via-buffer", 0) != 0;
  Endpoint endpoint;
  endpoint.unix_socket = FlagValue(argc, argv, "unix", 0) != 0;
  // Touched now, so page faults are not timed.
  std::vector<std::vector<char>> landing(land_bytes > 0 ? streams : 0);
  for (std::vector<char>& l : landing) l.assign(land_bytes / streams, '\0');
  char dir[] = "/tmp/weightd-bench-tcp.XXXXXX";
  if (endpoint.unix_socket) {
    if (::mkdtemp(dir) == nullptr) Die("mkdtemp");
    endpoint.local.sun_family = AF_UNIX;
    std::snprintf(endpoint.local.sun_path, sizeof endpoint.local.sun_path, "%s/s.sock", dir);
  } else {
    endpoint.inet.sin_family = AF_INET;
    endpoint.inet.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  }
  const int listener = ::socket(endpoint.family(), SOCK_STREAM, 0);
  socklen_t len = endpoint.size();
  if (listener < 0 || ::bind(listener, endpoint.addr(), endpoint.size()) != 0 ||
      ::listen(listener, static_cast<int>(streams)) != 0 ||
      (!endpoint.unix_socket &&
       ::getsockname(listener, reinterpret_cast<sockaddr*>(&endpoint.inet), &len) != 0)) {
    Die("listen");
  }
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (uint64_t s = 0; s < streams; ++s) {
    threads.emplace_back(Send, &endpoint, bytes / streams + (s < bytes % streams ? 1 : 0));
  }
  for (uint64_t s = 0; s < streams; ++s) {
    const int fd = ::accept(listener, nullptr, nullptr);
    if (fd < 0) Die("accept");
    threads.emplace_back(Receive, fd, landing.empty() ? nullptr : &landing[s], via_buffer);
  }
  for (std::thread& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ::close(listener);
  if (endpoint.unix_socket) {
    ::unlink(endpoint.local.sun_path);
    ::rmdir(dir);
  }
  std::printf("{\"tool\":\"weightd-bench-tcp\",\"transport\":\"%s\",\"via_buffer\":%s,\"streams\":%llu,"
              "\"bytes\":%llu,\"land_bytes\":%llu,\"seconds\":%.4f,\"gbps\":%.3f,\"cpu_seconds\":%.2f}\n",
              endpoint.unix_socket ? "unix" : "tcp", via_buffer ? "true" : "false",
              static_cast<unsigned long long>(streams), static_cast<unsigned long long>(bytes),
              static_cast<unsigned long long>(land_bytes), seconds, static_cast<double>(bytes) / seconds / 1e9,
              weightd::ProcessCpuSeconds());
  return 0;
}
