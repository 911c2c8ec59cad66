// Receives the data section of one shard and hands each tensor to the load's
// TensorPlacer: stored tensors whose rank slices are byte ranges of the source
// are written through as their bytes arrive (in any order); other tensors are
// gathered on the host first (quantized ones need whole tiles' amax), or handed
// over whole by a path load's positioned read, then placed on every rank.
// Thread-safe for distinct tensors: a stream delivers one tensor after another,
// while a path load delivers several tensors of one shard from several threads
// at once (a gathered tensor's bytes from one thread, in order). All writers of
// a load write disjoint regions of the arenas.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"

#include "base/gather_buffer.h"
#include "kernels/quantize.h"
#include "services/load/host_budget.h"
#include "services/load/pinned_gather.h"
#include "services/load/planner.h"
#include "services/load/progress.h"
#include "services/load/push_pinning.h"
#include "services/load/slice_amax.h"
#include "services/load/tensor_placer.h"
#include "services/safetensors/parser.h"

namespace weightd {

class ShardWriter : public safetensors::TensorSink, public std::enable_shared_from_this<ShardWriter> {
 public:
  // `placer` holds the arenas: they live while any writer of the load does.
  ShardWriter(std::string file, const safetensors::ShardHeader& header,
              const std::vector<TensorTask>& tasks, std::shared_ptr<TensorPlacer> placer,
              kernels::NonFinitePolicy policy, LoadProgress& progress,
              const std::atomic<bool>& aborted);

  absl::Status OnTensorBytes(size_t index, uint64_t offset, std::string_view bytes) override;
  absl::Status OnTensorComplete(size_t index) override;
  // A whole tensor at once (a path load's positioned read): quantized straight
  // from `bytes`, without gathering a copy.
  absl::Status OnWholeTensor(size_t index, std::string_view bytes);
  // Whether tensor `index` is written as its bytes arrive, in any order.
  bool Streams(size_t index) const { return streams_[index]; }

  // A stream's writer: each gathered tensor is placed (amax, quantized, copied to
  // the device) by a task handed to `post`, which must run it on threads other
  // than the caller's, while the caller gathers the next tensor. One placement is
  // in flight at a time; a tensor completing before it ends waits for it, unless
  // the load has failed (OnAborted). Its error comes back from a later call.
  // Without this, tensors are placed inline. The writer must be owned by a
  // shared_ptr: a placement in flight holds it, and its owner (set_owner).
  void PlaceOffThread(std::function<void(std::function<void()>)> post) { post_ = std::move(post); }
  // What the writer's references point into (its LoadJob), held by a placement
  // in flight with the writer, so that a stream of a failed load need not wait
  // for a placement that does not return (a hung collective).
  void set_owner(std::weak_ptr<const void> owner) { owner_ = std::move(owner); }
  // Waits for the placement in flight; the first placement error, if any, or
  // ABORTED once the load has failed with a placement still in flight. Call
  // before the stream reports the shard done (the writer goes with it).
  absl::Status Settle();
  // The load has failed: a stream waiting for the placement in flight stops
  // waiting (ABORTED); that placement keeps the writer until it returns.
  void OnAborted();
  // A stream's writer: a tensor written through arrives in small pieces (gRPC's
  // HTTP/2 frames, 16 KiB); consecutive pieces are joined into runs of up to
  // kStreamedRunBytes before they go to the device, so each device write stays
  // large. A run is written once it is full, the next piece is not its
  // continuation, or its tensor completes.
  void CoalesceStreamedWrites() { coalesce_ = true; }
  static constexpr uint64_t kStreamedRunBytes = uint64_t{4} << 20;
  // A stream's writer: a gathered tensor is pinned for its placement
  // (DeviceBackend::PinSource) when `pinning` says so as it is placed, so the
  // copy engines read it in place instead of through a host copy into the
  // staging slots. The pin stays with its buffer (PinnedGather): once the copies
  // have landed the buffer takes a later tensor, which is then read in place
  // without pinning again (pinned anew only where it is larger). Unpinned when
  // `pinning` says no, for per-channel and block tensors, whose scales the copies
  // into the slots take in the same pass (a pinned one would take a pass of its
  // own: more CPU, measured in docs/performance.md), and when the buffer goes.
  // Nothing where the backend pins no sources. `pinning` outlives the writer.
  void PinGatheredTensors(const PushPinning* pinning) {
    pinning_ = placer_->backend().pins_sources() ? pinning : nullptr;
  }

  // A stream's writer under --host-memory-limit: gathered tensors are admitted
  // whole before their first byte (services/load/host_budget.h) and released
  // once placed, or when the writer goes.
  void UseHostBudget(HostBudget* budget) { budget_ = budget; }
  // The stream is about to feed `n` data bytes from data position `begin`:
  // admits the gathered tensors starting there, in order, and returns how many
  // of the bytes may be fed now. Fewer than `n`: a tensor waits for memory, and
  // `ready` runs once it is admitted (then call again). RESOURCE_EXHAUSTED: a
  // tensor larger than the budget's gathering share.
  absl::StatusOr<uint64_t> AdmitGathers(uint64_t begin, uint64_t n, std::function<void()> ready);
  ~ShardWriter() override;

 private:
  // A tensor being gathered: its bytes so far and, where placing it takes the
  // whole tensor's amax, the amax of those bytes (taken as they are copied in).
  struct Gathering {
    PinnedGather bytes;
    std::optional<RunningAmax> amax;
  };
  // A gathered (or whole) tensor onto its ranks; `amax`, if known, the whole tensor's.
  absl::Status Place(size_t index, std::string_view source, std::optional<float> amax = std::nullopt);
  absl::Status Quantize(size_t index, std::string_view source, std::optional<float> amax);
  // A part of a fused output with one per-tensor scale: its amax taken (a
  // non-finite value named), then handed to the placer, which holds it until the
  // output's other parts arrive.
  absl::Status QuantizeFused(size_t index, GatherBuffer source, std::optional<float> amax);
  // INVALID_ARGUMENT naming the first non-finite element of `source` and its file offset.
  absl::Status NonFiniteError(size_t index, std::string_view source) const;
  std::string Where(size_t index) const;
  // RESOURCE_EXHAUSTED naming the tensor whose gathering buffer could not be allocated.
  absl::Status NoHostMemory(size_t index) const;
  // The placement of a gathered tensor, and its bookkeeping; takes `source`'s buffer back.
  absl::Status PlaceGathered(size_t index, PinnedGather source, std::optional<float> amax);
  // The bytes admitted for tensor `index`, no longer recorded (0 if none). Needs mu_.
  uint64_t TakeAdmittedLocked(size_t index);
  // Waits until no placement is in flight (or the load has failed); the first
  // placement error.
  absl::Status AwaitPlacement(std::unique_lock<std::mutex>& lock);

  std::string file_;
  const safetensors::ShardHeader& header_;
  const std::vector<TensorTask>& tasks_;
  std::shared_ptr<TensorPlacer> placer_;
  kernels::NonFinitePolicy policy_;
  LoadProgress& progress_;
  const std::atomic<bool>& aborted_;
  std::vector<bool> streams_;  // by tensor index: written as bytes arrive
  std::vector<bool> whole_amax_;  // by tensor index: its amax is taken while it is gathered
  std::mutex mu_;
  // Source bytes of the tensors being quantized, by tensor index; finished
  // buffers are kept for the next tensor (with their pins), so their pages are
  // touched and pinned once.
  absl::node_hash_map<size_t, Gathering> staging_;  // pointer-stable: a thread appends without the lock
  std::vector<PinnedGather> spare_;
  // Admits tensor `index` with the kept buffer's charge if it covers `bytes`;
  // otherwise frees that buffer and its charge, and returns false.
  bool TakeSpareCharge(size_t index, uint64_t bytes);

  // Per-channel and block tensors: their scales are taken as they are copied into
  // the staging slots, so pinning them for PinGatheredTensors would cost a pass.
  static bool ScalesFromCopies(const TensorTask& task) {
    return task.kind == TaskKind::kQuantize && task.scheme != kernels::Scheme::kPerTensor;
  }

  // Writes the run of streamed bytes, if any.
  absl::Status FlushRun();

  // The run of streamed bytes (CoalesceStreamedWrites); owned by the stream's thread.
  bool coalesce_ = false;
  const PushPinning* pinning_ = nullptr;
  std::string run_;
  size_t run_index_ = 0;
  uint64_t run_offset_ = 0;

  std::function<void(std::function<void()>)> post_;
  std::weak_ptr<const void> owner_;
  HostBudget* budget_ = nullptr;
  // Owned by the stream's drain: the next tensor to admit and a queued ticket.
  size_t next_admit_ = 0;
  uint64_t waiting_ticket_ = 0;  // 0: none
  absl::flat_hash_map<size_t, uint64_t> admitted_;  // guarded by mu_: tensor -> admitted bytes
  uint64_t spare_charge_ = 0;  // guarded by mu_: admitted bytes the kept buffer holds
  std::condition_variable placed_;
  bool placing_ = false;       // guarded by mu_
  absl::Status place_status_;  // guarded by mu_: the first failed placement
};

}  // namespace weightd
