#include "services/sources/mapped_file.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace weightd {

absl::StatusOr<MappedFile> MappedFile::Map(int fd, uint64_t size, const std::string& file) {
  MappedFile mapped;
  if (size == 0) return mapped;
  void* data = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  if (data == MAP_FAILED) {
    return absl::InternalError(absl::StrCat("mapping '", file, "' (", size, " bytes): ", std::strerror(errno)));
  }
  mapped.data_ = static_cast<const char*>(data);
  mapped.size_ = size;
  return mapped;
}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) ::munmap(const_cast<char*>(data_), size_);
    data_ = other.data_;
    size_ = other.size_;
    other.data_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<char*>(data_), size_);
}

void MappedFile::WillNeed(uint64_t offset, uint64_t n) const {
  static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  if (data_ == nullptr || n == 0) return;
  const uint64_t begin = offset / page * page;
  ::madvise(const_cast<char*>(data_) + begin, offset + n - begin, MADV_WILLNEED);
}

}  // namespace weightd
