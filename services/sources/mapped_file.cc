#include "services/sources/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

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
  mapped.fd_ = fd;
  return mapped;
}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) ::munmap(const_cast<char*>(data_), size_);
    data_ = other.data_;
    size_ = other.size_;
    fd_ = other.fd_;
    other.data_ = nullptr;
    other.size_ = 0;
    other.fd_ = -1;
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<char*>(data_), size_);
}

namespace {
uint64_t PageSize() {
  static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  return page;
}
}  // namespace

void MappedFile::WillNeed(uint64_t offset, uint64_t n) const {
  if (data_ == nullptr || n == 0) return;
  const uint64_t begin = offset / PageSize() * PageSize();
  ::madvise(const_cast<char*>(data_) + begin, offset + n - begin, MADV_WILLNEED);
}

bool MappedFile::Cached(uint64_t offset, uint64_t n) const {
  if (data_ == nullptr || n == 0) return true;
  const uint64_t begin = offset / PageSize() * PageSize();
  const uint64_t pages = (offset + n - begin + PageSize() - 1) / PageSize();
  std::vector<unsigned char> resident(pages);
  if (::mincore(const_cast<char*>(data_) + begin, offset + n - begin, resident.data()) != 0) return true;
  for (unsigned char r : resident) {
    if ((r & 1) == 0) return false;
  }
  return true;
}

void MappedFile::Drop(uint64_t offset, uint64_t n) const {
  if (data_ == nullptr) return;
  const uint64_t begin = (offset + PageSize() - 1) / PageSize() * PageSize();
  const uint64_t end = (offset + n) / PageSize() * PageSize();
  if (end <= begin) return;
  // This mapping's page table entries first: the page cache keeps mapped pages.
  ::madvise(const_cast<char*>(data_) + begin, end - begin, MADV_DONTNEED);
  ::posix_fadvise(fd_, static_cast<off_t>(begin), static_cast<off_t>(end - begin), POSIX_FADV_DONTNEED);
}

}  // namespace weightd
