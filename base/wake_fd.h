// Stops a poll-loop thread that watches an eventfd: signals the eventfd, then
// joins the thread. For servers whose one thread polls sockets plus a wake fd.
// Thread-safety: call once, from a thread other than the one being stopped.
#pragma once

#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <thread>

namespace weightd {

inline void WakeAndJoin(int event_fd, std::thread& thread) {
  if (!thread.joinable()) return;
  uint64_t one = 1;
  while (::write(event_fd, &one, sizeof(one)) < 0 && errno == EINTR) {
  }
  thread.join();
}

}  // namespace weightd
