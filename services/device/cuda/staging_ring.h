// The bounded path from host bytes to one GPU: a fixed number of slots, each a
// pinned host buffer and a device buffer of the same size. Host-to-device copies
// run on one stream, quantization kernels on another, ordered by events; a slot
// is refilled only after its last use completed, so no more than the ring is ever
// in flight and device memory stays arena + ring whatever the tensor sizes.
// Thread-safe: several shard threads feed one ring; each fills its own slot and
// enqueues under a short lock.
#pragma once

#include <cuda_runtime.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/dtype.h"
#include "kernels/quantize.h"
#include "services/device/cuda/pinned_sources.h"
#include "services/device/gpu_waits.h"
#include "services/device/pinned_accounting.h"

namespace weightd::cuda {

class StagingRing {
 public:
  // `ring_bytes` of device memory (and as much pinned host memory), in `slots`.
  // Every pinned buffer is counted in `pinned` (may be null) while it exists.
  // `copy_streams` host-to-device streams take the chunks' copies in turn (one
  // stream keeps copies in order; several let the copy engines overlap them).
  // `waits`: whether a thread waiting for a slot, or for a fence (FenceCopies),
  // sleeps or spins (services/device/gpu_waits.h).
  static absl::StatusOr<std::unique_ptr<StagingRing>> Create(int device, uint64_t ring_bytes, int slots,
                                                             HostPinnedAccounting* pinned = nullptr,
                                                             int copy_streams = 1, GpuWaits waits = GpuWaits::kSpin);
  ~StagingRing();

  // Copies host `bytes` to device address `dst` (through pinned slots; the copy
  // may still be in flight when this returns: Synchronize waits). The part of the
  // bytes in `pinned` (PinnedSources) is copied straight from where it lies.
  absl::Status Write(uint8_t* dst, std::string_view bytes, PinnedSpan pinned = {});
  // Quantizes the host tensor `src` into device address `dst`; `scales` (host,
  // tiling.num_tiles() floats) travel with the data, chunk by chunk. Source bytes
  // in `pinned` go to the slot's device buffer straight from where they lie.
  absl::Status Quantize(uint8_t* dst, kernels::DType dtype, const void* src, const kernels::Tiling& tiling,
                        const float* scales, PinnedSpan pinned = {});
  // As Quantize, with the scales of `scheme` (kernels::TileScales semantics under
  // `policy`) taken on the host from each chunk's copy in its pinned slot, written to
  // `scales` (tiling.num_tiles()): a chunk is then whole tile rows, and the source is
  // read once instead of once for its scales and once for the copy.
  // FAILED_PRECONDITION, with nothing enqueued, where that cannot be: a tile row
  // larger than a slot (a per-tensor scale, mostly), or a source the GPU copies in
  // place (`pinned`); take the scales first and call Quantize then.
  absl::Status QuantizeTakingScales(uint8_t* dst, kernels::Scheme scheme, kernels::DType dtype, const void* src,
                                    const kernels::Tiling& tiling, kernels::NonFinitePolicy policy, float* scales,
                                    PinnedSpan pinned = {});
  // As Write, with the amax of the bytes (whole elements of `dtype`; kernels::AbsMax
  // under `policy`) taken on the host in the same pass as the copies into the slots
  // (in a pass of its own where part of the source is pinned and copied in place).
  absl::StatusOr<float> WriteTakingAmax(uint8_t* dst, std::string_view bytes, kernels::DType dtype,
                                        kernels::NonFinitePolicy policy, PinnedSpan pinned = {});
  // Quantizes, all with `scale`, the tiling.rows x tiling.cols elements of `dtype`
  // that Write or WriteTakingAmax stored at device address `stored`, into codes at
  // `to`: in place where `to` is `stored` (services/device/parked_tensor.h; the
  // first run's codes go through a slot), else in one step onto a range that does
  // not overlap them (the caller checks: CheckStoredAndCodes). The kernels run after every copy enqueued so far; a slot holds
  // the scale. INTERNAL for 1-byte elements (ParkableRows parks none).
  absl::Status QuantizeStored(uint8_t* stored, uint8_t* to, kernels::DType dtype, const kernels::Tiling& tiling,
                              float scale);
  // A predicate that holds once every kernel enqueued so far has run (an event on
  // the compute stream); null where the event cannot be made (then Synchronize).
  std::function<bool()> KernelsMarker();
  // Waits for everything enqueued; returns the first asynchronous error.
  absl::Status Synchronize();
  // Waits for the host-to-device copies enqueued so far (not the kernels): their
  // source bytes may then be unpinned.
  void FenceCopies();

  // Since the last call (and resets): the bytes copied to the device, and where the
  // feeding threads spent their time: waiting for a free slot, copying into pinned slots,
  // enqueueing copies and kernels (the ring's lock and the driver's calls).
  struct Stats {
    uint64_t chunks = 0;
    uint64_t h2d_bytes = 0;  // host-to-device bytes copied
    uint64_t in_place_bytes = 0;  // of those, copied straight from pinned sources
    uint64_t scaled_chunks = 0;  // chunks whose scales were taken as they were copied (QuantizeTakingScales)
    double wait_seconds = 0, fill_seconds = 0, enqueue_seconds = 0;
  };
  Stats TakeStats();

  uint64_t device_bytes() const { return device_bytes_; }
  uint64_t pinned_bytes() const { return pinned_bytes_; }

 private:
  struct Slot {
    uint8_t* pinned = nullptr;
    uint8_t* device = nullptr;
    cudaEvent_t copied = nullptr;
    cudaEvent_t done = nullptr;  // the slot's last use (copy or kernel) finished
    // Under GpuWaits::kAuto, `done` recorded again on a cudaEventBlockingSync event,
    // for the threads that sleep (`done` stays the spinners').
    cudaEvent_t done_sleeping = nullptr;
  };
  // Records the slot's `done` (and `done_sleeping`) on `stream`.
  cudaError_t RecordDone(Slot& slot, cudaStream_t stream);
  StagingRing(int device, HostPinnedAccounting* pinned) : device_(device), pinned_ledger_(pinned) {}
  // Blocks until a slot is free for this thread and its last use has completed:
  // the least recently returned slot, so a slow filler never holds up the others.
  absl::StatusOr<Slot*> Acquire();
  void Return(Slot* slot);
  // memcpy into a pinned slot, timed.
  void Fill(uint8_t* pinned, const void* src, uint64_t n);
  // The amax WriteThroughSlots takes from each slot's copy, where asked.
  struct TakenAmax {
    kernels::DType dtype;
    kernels::NonFinitePolicy policy;
    float value = 0.0f;
  };
  // Writes host bytes to `dst` through slots, one slot at a time; `amax` (may be
  // null) takes the bytes' amax in the same pass as each slot's fill.
  absl::Status WriteThroughSlots(uint8_t* dst, const uint8_t* src, uint64_t n, TakenAmax* amax = nullptr);
  // Host bytes [src, +n) bound for device [dst, +n): the part inside a pinned
  // span is copied from where it lies, the parts before and after it through the
  // slot's pinned buffer `staged` at the same offsets.
  struct Staged {
    uint8_t* dst;
    const uint8_t* src;
    uint8_t* staged;
    uint64_t n;
    uint64_t pinned_begin, pinned_end;  // offsets of the pinned part (equal: none)
  };
  static Staged Split(uint8_t* dst, const uint8_t* src, uint64_t n, uint8_t* staged, PinnedSpan pinned);
  // Fills the unpinned parts into the slot (outside the lock).
  void FillUnpinned(const Staged& s);
  // Copies `scale_count` scales into the slot after its data, enqueues the slot's
  // copies and the kernel for elements [begin, end) of the tensor at `dst`, and
  // returns the slot.
  absl::Status EnqueueChunk(Slot& s, const Staged& staged, const float* chunk_scales, uint64_t scale_count,
                            kernels::DType dtype, const kernels::Tiling& tiling, uint64_t begin, uint64_t end,
                            uint8_t* dst);
  // Enqueues the copies on `stream`. Needs mu_.
  cudaError_t EnqueueLocked(const Staged& s, cudaStream_t stream);
  // The copy stream for the next chunk, in turn. Needs mu_.
  cudaStream_t TakeCopyStreamLocked() { return copy_streams_[next_copy_++ % copy_streams_.size()]; }

  int device_;
  uint64_t device_bytes_ = 0;
  uint64_t pinned_bytes_ = 0;  // what cudaHostAlloc gave, released from the ledger on destruction
  HostPinnedAccounting* pinned_ledger_;
  uint64_t slot_data_bytes_ = 0;   // source bytes per slot
  uint64_t slot_scale_bytes_ = 0;  // scales per slot, after the data
  GpuWaits waits_ = GpuWaits::kSpin;
  std::vector<cudaStream_t> copy_streams_;
  size_t next_copy_ = 0;  // guarded by mu_
  cudaStream_t compute_stream_ = nullptr;
  // One per copy stream: recorded there and waited for on the compute stream (under
  // mu_), so that kernels run after the copies enqueued before them.
  std::vector<cudaEvent_t> copy_fences_;
  std::vector<Slot> slots_;

  std::mutex mu_;
  std::condition_variable slot_freed_;
  std::deque<Slot*> free_;  // least recently returned first
  Stats stats_;
};

}  // namespace weightd::cuda
