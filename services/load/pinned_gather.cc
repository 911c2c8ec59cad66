#include "services/load/pinned_gather.h"

#include <utility>

namespace weightd {

PinnedGather::PinnedGather(PinnedGather&& other) noexcept
    : bytes_(std::move(other.bytes_)), pin_(std::move(other.pin_)), pinned_(std::exchange(other.pinned_, 0)) {}

PinnedGather& PinnedGather::operator=(PinnedGather&& other) noexcept {
  Unpin();  // before the memory it covers goes
  bytes_ = std::move(other.bytes_);
  pin_ = std::move(other.pin_);
  pinned_ = std::exchange(other.pinned_, 0);
  return *this;
}

bool PinnedGather::Reset(uint64_t capacity) {
  if (capacity > bytes_.capacity()) Unpin();
  return bytes_.Reset(capacity);
}

void PinnedGather::Pin(DeviceBackend& backend) {
  if (pin_ != nullptr && pinned_ >= bytes_.size()) return;
  Unpin();
  pin_ = backend.PinSource(bytes_.data(), bytes_.size());
  if (pin_ != nullptr) pinned_ = bytes_.size();
}

void PinnedGather::Unpin() {
  pin_.reset();  // waits for the copies from it
  pinned_ = 0;
}

void PinnedGather::AwaitCopies() {
  if (pin_ != nullptr) pin_->AwaitCopies();
}

GatherBuffer PinnedGather::Release() {
  Unpin();
  return std::move(bytes_);
}

}  // namespace weightd
