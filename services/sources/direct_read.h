// Reads parts of a checkpoint file that are not in the page cache past it, with
// O_DIRECT: aligned requests of `piece` bytes, `in_flight` of them at once (the
// calling thread and helpers), into a buffer the reader owns and reuses. A model
// read once then neither fills the page cache nor pays for the kernel's readahead
// in small requests, and the disk's own sequential bandwidth is the limit.
// Thread-compatible: one DirectFile may serve many readers, each with its own
// DirectBuffer.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "base/unique_fd.h"

namespace weightd {

// Page-aligned anonymous memory that grows to the largest read and is unmapped
// when destroyed. Move-only.
class DirectBuffer {
 public:
  DirectBuffer() = default;
  DirectBuffer(DirectBuffer&& other) noexcept { *this = std::move(other); }
  DirectBuffer& operator=(DirectBuffer&& other) noexcept;
  DirectBuffer(const DirectBuffer&) = delete;
  DirectBuffer& operator=(const DirectBuffer&) = delete;
  ~DirectBuffer();

  // At least `bytes`, keeping nothing of what it held; RESOURCE_EXHAUSTED where
  // the kernel refuses the memory.
  absl::Status Reserve(uint64_t bytes);
  char* data() const { return data_; }
  uint64_t capacity() const { return capacity_; }

 private:
  char* data_ = nullptr;
  uint64_t capacity_ = 0;
};

class DirectFile {
 public:
  static constexpr uint64_t kAlignment = 4096;
  // Opens the file behind `fd` a second time with O_DIRECT (through /proc/self/fd,
  // so the file is the one already opened and confined). FAILED_PRECONDITION where
  // the file system refuses O_DIRECT (tmpfs): read through the page cache instead.
  static absl::StatusOr<DirectFile> Open(int fd, const std::string& file);

  struct Read {
    const char* bytes = nullptr;  // the byte at `offset`
    uint64_t got = 0;             // bytes from `offset` that arrived: fewer only at the end of the file
  };
  // Reads [offset, offset + n) into `buffer` (grown to the aligned span). A failed
  // request is INTERNAL naming the file and the byte offset.
  absl::StatusOr<Read> ReadRange(uint64_t offset, uint64_t n, DirectBuffer& buffer, uint64_t piece,
                                 int in_flight) const;

 private:
  UniqueFd fd_;
  std::string file_;
};

}  // namespace weightd
