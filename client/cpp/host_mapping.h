// One host-backend allocation (a memfd from the handle socket) mapped read-only
// into this process. Unmaps on destruction. Not thread-safe; move-only.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"

namespace weightd::client {

class HostMapping {
 public:
  // `fd` is borrowed: the mapping holds the memory after the descriptor closes.
  static absl::StatusOr<HostMapping> Map(int fd, uint64_t size, uint32_t allocation_id);
  HostMapping(HostMapping&& other) noexcept;
  HostMapping& operator=(HostMapping&&) = delete;
  ~HostMapping();

  void* address() const { return address_; }
  uint64_t size() const { return size_; }

 private:
  HostMapping(void* address, uint64_t size) : address_(address), size_(size) {}
  void* address_;
  uint64_t size_;
};

}  // namespace weightd::client
