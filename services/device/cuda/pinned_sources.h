// Host ranges the driver lets the copy engines read in place (cudaHostRegister,
// read-only, portable to every device): a path load pins each segment of a mapped
// checkpoint file while it is copied, so its bytes go from the page cache to the
// GPU with no host copy. Only whole pages inside the asked range are pinned, so
// the pins of adjacent segments never overlap; the bytes of the partial pages at
// either end go through the staging ring's pinned slots as before.
// Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>

#include "services/device/device_backend.h"

namespace weightd::cuda {

// The pinned part of a source range: [begin, end), empty when begin == end.
struct PinnedSpan {
  const uint8_t* begin = nullptr;
  const uint8_t* end = nullptr;
  bool empty() const { return begin == end; }
};

class PinnedSources {
 public:
  // Ranges smaller than this are not worth a registration (about 30 us each).
  static constexpr uint64_t kMinBytes = uint64_t{1} << 20;

  // Whether the driver can pin read-only memory (a mapped file is read-only).
  static bool Supported();

  // Pins the whole pages inside [data, +size); null if there are fewer than
  // kMinBytes of them or the driver refuses (logged once). The pin's destructor
  // calls `fence` (which must wait for every copy issued so far on every device)
  // before it unpins; its AwaitCopies calls it alone. `fence` must outlive the pin.
  std::unique_ptr<SourcePin> Pin(const void* data, uint64_t size, std::function<void()> fence);

  // The part of [data, +size) inside one pinned range; empty if none.
  PinnedSpan Find(const void* data, uint64_t size) const;

 private:
  class Pinned;
  void Forget(uintptr_t begin);

  mutable std::mutex mu_;
  std::map<uintptr_t, uintptr_t> ranges_;  // begin -> end
};

}  // namespace weightd::cuda
