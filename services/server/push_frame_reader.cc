#include "services/server/push_frame_reader.h"

#include <grpc/slice.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/byte_size.h"
#include "base/raw_push_wire.h"

namespace weightd {

class PushFrameReader::Pool : public std::enable_shared_from_this<Pool> {
 public:
  struct Buffer {
    std::unique_ptr<char[]> bytes;
    size_t capacity = 0;
  };
  // What a slice holds: its buffer, and the pool it goes back to.
  struct Lease {
    std::shared_ptr<Pool> pool;
    Buffer buffer;
  };

  Buffer Take(size_t n) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (size_t i = 0; i < free_.size(); ++i) {
        if (free_[i].capacity < n) continue;
        Buffer buffer = std::move(free_[i]);
        free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(i));
        return buffer;
      }
    }
    return Buffer{std::unique_ptr<char[]>(new char[n]), n};
  }

  grpc::Slice Wrap(Buffer buffer, size_t n) {
    char* bytes = buffer.bytes.get();
    auto* lease = new Lease{shared_from_this(), std::move(buffer)};
    return grpc::Slice(grpc_slice_new_with_user_data(bytes, n, &Pool::GiveBack, lease), grpc::Slice::STEAL_REF);
  }

  void Put(Buffer buffer) {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.size() < kPooledBuffers) free_.push_back(std::move(buffer));
  }

 private:
  static void GiveBack(void* user_data) {
    std::unique_ptr<Lease> lease(static_cast<Lease*>(user_data));
    lease->pool->Put(std::move(lease->buffer));
  }

  std::mutex mu_;
  std::vector<Buffer> free_;
};

PushFrameReader::PushFrameReader(int fd, uint32_t max_frame_bytes)
    : fd_(fd), max_frame_bytes_(max_frame_bytes), pool_(std::make_shared<Pool>()) {}

PushFrameReader::~PushFrameReader() = default;

void PushFrameReader::SetReceiveTimeout(std::chrono::milliseconds timeout) {
  timeout_ = timeout;
  const struct timeval tv = {static_cast<time_t>(timeout.count() / 1000),
                             static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

absl::StatusOr<size_t> PushFrameReader::ReadFully(void* into, size_t n) {
  size_t got = 0;
  while (got < n) {
    const ssize_t r = ::read(fd_, static_cast<char*>(into) + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && timeout_.count() > 0) {
      offset_ += got;
      return absl::DeadlineExceededError(absl::StrCat("raw push: nothing received for ", timeout_.count(),
                                                      " ms at byte ", offset_));
    }
    if (r < 0) {
      return absl::UnavailableError(absl::StrCat("raw push: read failed at byte ", offset_ + got, ": ",
                                                 std::strerror(errno)));
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  offset_ += got;
  return got;
}

absl::StatusOr<std::optional<grpc::Slice>> PushFrameReader::Next() {
  unsigned char prefix[kRawPushLengthBytes];
  const uint64_t start = offset_;
  absl::StatusOr<size_t> got = ReadFully(prefix, sizeof(prefix));
  if (!got.ok()) return got.status();
  if (*got < sizeof(prefix)) {
    return absl::DataLossError(absl::StrCat("raw push: connection closed at byte ", start + *got,
                                            " without the end frame"));
  }
  const uint32_t length = ReadLength(prefix);
  if (length == 0) return std::nullopt;
  if (length > max_frame_bytes_) {
    return absl::ResourceExhaustedError(absl::StrCat("raw push: frame at byte ", start, " of ", length,
                                                     " bytes is over the limit of ", FormatByteSize(max_frame_bytes_)));
  }
  Pool::Buffer buffer = pool_->Take(length);
  got = ReadFully(buffer.bytes.get(), length);
  if (!got.ok()) return got.status();
  if (*got < length) {
    return absl::DataLossError(absl::StrCat("raw push: connection closed at byte ", offset_, " inside the frame at byte ",
                                            start, " (", *got, " of its ", length, " bytes)"));
  }
  return pool_->Wrap(std::move(buffer), length);
}

}  // namespace weightd
