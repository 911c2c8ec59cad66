// Whether a push stream's gathered tensors are pinned for their placement
// (ShardWriter::PinGatheredTensors, --pin-pushed-tensors): always (the default),
// never, or while few push streams are open in the daemon (auto). Pinned, the
// GPU's copy engines read a gathered tensor in place: a third less daemon CPU.
// While each tensor was pinned anew, pinning was faster up to 4 streams and
// slower at 8 (the registrations, and the copy engines' reads of DRAM beside the
// streams landing theirs), hence auto; since the pins stay with the streams'
// buffers (PinnedGather) it is faster at 8 too (docs/performance.md, "The push
// path"). The choice is made per tensor, as it is placed, from the streams open
// then. Thread-safe.
#pragma once

#include <atomic>
#include <limits>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace weightd {

class PushPinning {
 public:
  // auto: pinned while at most this many push streams are open.
  static constexpr int kAutoMaxStreams = 4;
  static constexpr int kAlways = std::numeric_limits<int>::max();

  // `max_streams`: pinned while at most this many are open (0: never).
  explicit PushPinning(int max_streams) : max_streams_(max_streams) {}
  // --pin-pushed-tensors: "auto", "true" or "false" (INVALID_ARGUMENT otherwise).
  static absl::StatusOr<int> ParseFlag(absl::string_view value);

  // One open push stream, counted while it lives.
  class Stream {
   public:
    explicit Stream(PushPinning* pinning) : pinning_(pinning) {
      if (pinning_ != nullptr) pinning_->open_.fetch_add(1, std::memory_order_relaxed);
    }
    ~Stream() {
      if (pinning_ != nullptr) pinning_->open_.fetch_sub(1, std::memory_order_relaxed);
    }
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;

   private:
    PushPinning* pinning_;
  };

  // Whether a tensor placed now is pinned.
  bool Now() const { return max_streams_ > 0 && open_.load(std::memory_order_relaxed) <= max_streams_; }
  int open() const { return open_.load(std::memory_order_relaxed); }

 private:
  const int max_streams_;
  std::atomic<int> open_{0};
};

}  // namespace weightd
