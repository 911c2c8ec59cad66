// A host buffer that positioned reads land in: anonymous memory advised to use
// transparent huge pages (a 100 MiB tensor faults in ~50 pages, not ~25,000), never
// zero-filled by the allocator, and kept across reads so its pages are touched
// once per thread and load. Not thread-safe: one per reading thread.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <string_view>

namespace weightd {

class ReadBuffer {
 public:
  ReadBuffer() = default;
  ReadBuffer(const ReadBuffer&) = delete;
  ReadBuffer& operator=(const ReadBuffer&) = delete;
  ~ReadBuffer() { Free(); }

  // Room for `size` bytes (contents not kept when it grows); nullptr if memory is short.
  char* Reserve(size_t size) {
    if (size <= capacity_) return data_;
    Free();
    constexpr size_t kHuge = 2u << 20;
    const size_t bytes = (size + kHuge - 1) / kHuge * kHuge;
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    ::madvise(p, bytes, MADV_HUGEPAGE);  // advice only: fine where THP is off
    data_ = static_cast<char*>(p);
    capacity_ = bytes;
    return data_;
  }
  std::string_view view(size_t size) const { return std::string_view(data_, size); }

 private:
  void Free() {
    if (data_ != nullptr) ::munmap(data_, capacity_);
    data_ = nullptr;
    capacity_ = 0;
  }
  char* data_ = nullptr;
  size_t capacity_ = 0;
};

}  // namespace weightd
