#include "services/sources/direct_read.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace weightd {

DirectBuffer& DirectBuffer::operator=(DirectBuffer&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) ::munmap(data_, capacity_);
    data_ = std::exchange(other.data_, nullptr);
    capacity_ = std::exchange(other.capacity_, 0);
  }
  return *this;
}

DirectBuffer::~DirectBuffer() {
  if (data_ != nullptr) ::munmap(data_, capacity_);
}

absl::Status DirectBuffer::Reserve(uint64_t bytes) {
  if (bytes <= capacity_) return absl::OkStatus();
  if (data_ != nullptr) ::munmap(data_, capacity_);
  data_ = nullptr;
  capacity_ = 0;
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    return absl::ResourceExhaustedError(
        absl::StrCat("a buffer of ", bytes, " bytes for reading past the page cache: ", std::strerror(errno)));
  }
  data_ = static_cast<char*>(p);
  capacity_ = bytes;
  return absl::OkStatus();
}

absl::StatusOr<DirectFile> DirectFile::Open(int fd, const std::string& file) {
  const std::string self = absl::StrCat("/proc/self/fd/", fd);
  const int direct = ::open(self.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  if (direct < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("'", file, "' cannot be read with O_DIRECT: ", std::strerror(errno)));
  }
  DirectFile out;
  out.fd_ = UniqueFd(direct);
  out.file_ = file;
  return out;
}

absl::StatusOr<DirectFile::Read> DirectFile::ReadRange(uint64_t offset, uint64_t n, DirectBuffer& buffer,
                                                       uint64_t piece, int in_flight) const {
  const uint64_t begin = offset / kAlignment * kAlignment;
  const uint64_t end = (offset + n + kAlignment - 1) / kAlignment * kAlignment;
  if (auto s = buffer.Reserve(end - begin); !s.ok()) return s;
  piece = std::max(kAlignment, piece / kAlignment * kAlignment);
  const uint64_t pieces = (end - begin + piece - 1) / piece;
  // Each piece's bytes that arrived; the first failure by offset is the answer.
  std::vector<uint64_t> arrived(pieces, 0);
  std::mutex mu;
  uint64_t failed_at = UINT64_MAX;
  int failed_errno = 0;
  std::atomic<uint64_t> next{0};
  auto work = [&] {
    for (uint64_t i = next++; i < pieces; i = next++) {
      const uint64_t at = begin + i * piece;
      const uint64_t want = std::min(piece, end - at);
      char* out = buffer.data() + (at - begin);
      uint64_t done = 0;
      while (done < want) {
        const ssize_t r = ::pread(fd_.get(), out + done, want - done, static_cast<off_t>(at + done));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
          std::lock_guard<std::mutex> lock(mu);
          if (at + done < failed_at) {
            failed_at = at + done;
            failed_errno = errno;
          }
          break;
        }
        if (r == 0) break;  // the end of the file
        done += static_cast<uint64_t>(r);
        if (done % kAlignment != 0) break;  // a short read ends at the end of the file
      }
      arrived[i] = done;
    }
  };
  std::vector<std::thread> helpers;
  for (int t = 1; t < std::min<int>(in_flight, static_cast<int>(pieces)); ++t) {
    try {
      helpers.emplace_back(work);
    } catch (const std::system_error&) {
      break;  // fewer requests in flight
    }
  }
  work();
  for (std::thread& t : helpers) t.join();
  if (failed_at != UINT64_MAX) {
    return absl::InternalError(absl::StrCat("reading '", file_, "' at byte offset ", failed_at,
                                            " (O_DIRECT): ", std::strerror(failed_errno)));
  }
  // The bytes from `begin` that arrived without a gap.
  uint64_t contiguous = 0;
  for (uint64_t i = 0; i < pieces; ++i) {
    contiguous += arrived[i];
    if (arrived[i] < std::min(piece, end - (begin + i * piece))) break;
  }
  Read read;
  read.bytes = buffer.data() + (offset - begin);
  read.got = contiguous > offset - begin ? std::min(n, contiguous - (offset - begin)) : 0;
  return read;
}

}  // namespace weightd
