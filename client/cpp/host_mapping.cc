#include "client/cpp/host_mapping.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace weightd::client {

absl::StatusOr<HostMapping> HostMapping::Map(int fd, uint64_t size, uint32_t allocation_id) {
  if (fd < 0) return absl::DataLossError(absl::StrCat("allocation ", allocation_id, " came without a descriptor"));
  if (size == 0) return HostMapping(nullptr, 0);
  void* address = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  if (address == MAP_FAILED) {
    return absl::InternalError(
        absl::StrCat("mmap of allocation ", allocation_id, " (", size, " bytes): ", std::strerror(errno)));
  }
  return HostMapping(address, size);
}

HostMapping::HostMapping(HostMapping&& other) noexcept
    : address_(std::exchange(other.address_, nullptr)), size_(std::exchange(other.size_, 0)) {}

HostMapping::~HostMapping() {
  if (address_ != nullptr) ::munmap(address_, size_);
}

}  // namespace weightd::client
