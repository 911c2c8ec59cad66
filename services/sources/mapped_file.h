// A checkpoint file mapped read-only, whole: a path load hands tensors to the
// pipeline as views of the page cache (no read into a host buffer), and the CUDA
// backend pins segments of it so the GPU copies them in place. The file must not
// shrink while it is mapped: touching a page past its new end raises SIGBUS, as
// for every loader that maps checkpoints (docs/architecture.md says so).
// Thread-safe after Map (read-only).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace weightd {

class MappedFile {
 public:
  // Maps `size` bytes of `fd` (the file's size when its header was read);
  // INTERNAL naming `file` if the kernel refuses. `fd` must outlive the mapping.
  static absl::StatusOr<MappedFile> Map(int fd, uint64_t size, const std::string& file);
  MappedFile() = default;
  MappedFile(MappedFile&& other) noexcept { *this = std::move(other); }
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  uint64_t size() const { return size_; }
  // Bytes [offset, +n); the caller keeps within size().
  std::string_view view(uint64_t offset, uint64_t n) const { return {data_ + offset, n}; }
  // Starts reading [offset, +n) from disk ahead of use, where it is not cached.
  void WillNeed(uint64_t offset, uint64_t n) const;
  // Whether every page of [offset, +n) is in the page cache (mincore); true if unknown.
  bool Cached(uint64_t offset, uint64_t n) const;
  // Lets the kernel drop the whole pages inside [offset, +n) from the page cache (a
  // cold checkpoint read once does not push out what the node had cached). Only
  // pages no one else maps or pins go.
  void Drop(uint64_t offset, uint64_t n) const;

 private:
  const char* data_ = nullptr;
  uint64_t size_ = 0;
  int fd_ = -1;
};

}  // namespace weightd
