// A growable host buffer whose bytes are not initialised when it grows: a
// pushed tensor is gathered into one piece by piece, each piece written once
// (and its amax taken in the same pass, RunningAmax::CopyAppend). A std::string
// would zero every byte first (resize), a whole extra pass over up to a gigabyte.
// Fresh allocations of kHugePageAdviceMin or more are advised to huge pages.
// Move-only; not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

namespace weightd {

class GatherBuffer {
 public:
  GatherBuffer() = default;
  GatherBuffer(GatherBuffer&&) noexcept;
  GatherBuffer& operator=(GatherBuffer&&) noexcept;
  ~GatherBuffer();
  // A buffer holding a copy of `bytes`; its size is not bytes.size() when the
  // memory could not be had.
  static GatherBuffer CopyOf(std::string_view bytes);

  // Empties the buffer and makes room for `capacity` bytes: the memory is kept
  // when it is large enough, else freed and allocated afresh (the contents are
  // never carried over). False when the memory could not be had (the buffer is
  // then empty, with no memory).
  bool Reset(uint64_t capacity);
  // The next `n` bytes, appended uninitialised, for the caller to write; null
  // when they would pass the capacity, or the buffer has no memory (nothing
  // appended).
  char* Extend(uint64_t n);

  char* data() { return data_.get(); }
  const char* data() const { return data_.get(); }
  uint64_t size() const { return size_; }
  uint64_t capacity() const { return capacity_; }
  std::string_view view() const { return {data_.get(), static_cast<size_t>(size_)}; }

 private:
  std::unique_ptr<char[]> data_;
  uint64_t size_ = 0;
  uint64_t capacity_ = 0;
};

}  // namespace weightd
