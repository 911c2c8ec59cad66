// A stream's gather buffer that keeps its pin (DeviceBackend::PinSource) from
// one tensor to the next. Pinning a buffer (registering its pages with the
// driver) costs about as much as copying it, and a push stream gathers hundreds
// of tensors into the same two buffers: pinned once and kept, the copy engines
// read every later tensor in place for nothing (docs/performance.md, "The push
// path"). The pin covers bytes the buffer has gathered (written) only, never
// fresh memory: a read-only registration of untouched anonymous memory would
// pin the kernel's shared zero page. Move-only; not thread-safe.
#pragma once

#include <cstdint>
#include <memory>

#include "base/gather_buffer.h"
#include "services/device/device_backend.h"

namespace weightd {

class PinnedGather {
 public:
  PinnedGather() = default;
  PinnedGather(PinnedGather&& other) noexcept;
  PinnedGather& operator=(PinnedGather&& other) noexcept;
  ~PinnedGather() { Unpin(); }  // the pin before the memory

  GatherBuffer& bytes() { return bytes_; }
  const GatherBuffer& bytes() const { return bytes_; }

  // GatherBuffer::Reset; unpinned first when the memory is to be allocated afresh.
  bool Reset(uint64_t capacity);
  // Pins the bytes gathered so far (all written) where they are not pinned yet:
  // nothing when the pin covers them; else the pin is dropped and the bytes
  // pinned anew (pins must not overlap). Not pinned where the backend refuses.
  void Pin(DeviceBackend& backend);
  // Drops the pin, if any, after the copies from it have landed.
  void Unpin();
  // Waits until every copy from the pinned bytes issued so far has landed, so
  // that the buffer may take the next tensor's bytes. Nothing if unpinned (the
  // copies into the staging slots are done when they return).
  void AwaitCopies();
  // The buffer, unpinned (for an owner that keeps it without the pin).
  GatherBuffer Release();

 private:
  GatherBuffer bytes_;
  std::unique_ptr<SourcePin> pin_;
  uint64_t pinned_ = 0;  // the bytes the pin covers, from the start (0: none)
};

}  // namespace weightd
