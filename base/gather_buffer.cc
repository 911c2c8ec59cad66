#include "base/gather_buffer.h"

#include <cstring>
#include <new>
#include <utility>

#include "base/huge_pages.h"

namespace weightd {

GatherBuffer::GatherBuffer(GatherBuffer&& other) noexcept
    : data_(std::move(other.data_)),
      size_(std::exchange(other.size_, 0)),
      capacity_(std::exchange(other.capacity_, 0)) {}

GatherBuffer& GatherBuffer::operator=(GatherBuffer&& other) noexcept {
  data_ = std::move(other.data_);
  size_ = std::exchange(other.size_, 0);
  capacity_ = std::exchange(other.capacity_, 0);
  return *this;
}

GatherBuffer::~GatherBuffer() = default;

GatherBuffer GatherBuffer::CopyOf(std::string_view bytes) {
  GatherBuffer buffer;
  if (!bytes.empty() && buffer.Reset(bytes.size())) std::memcpy(buffer.Extend(bytes.size()), bytes.data(), bytes.size());
  return buffer;
}

bool GatherBuffer::Reset(uint64_t capacity) {
  size_ = 0;
  if (capacity <= capacity_) return true;
  data_.reset();
  capacity_ = 0;
  if (capacity > SIZE_MAX) return false;
  // Default-initialised chars: no pass over the memory here.
  data_.reset(new (std::nothrow) char[static_cast<size_t>(capacity)]);
  if (data_ == nullptr) return false;
  capacity_ = capacity;
  AdviseHugePages(data_.get(), static_cast<size_t>(capacity));  // fresh: not faulted in yet
  return true;
}

char* GatherBuffer::Extend(uint64_t n) {
  if (n > capacity_ - size_) return nullptr;
  char* at = data_.get() + size_;
  size_ += n;
  return at;
}

}  // namespace weightd
