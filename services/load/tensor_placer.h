// Puts each source tensor onto the ranks of a load as its TensorTask says.
// A stored tensor whose slices are single byte ranges of the source (split on
// dim 0, or replicated) is written as its bytes arrive; any other is written
// from the gathered tensor. A quantized tensor is gathered on the host; where
// the scale scope needs it the ranks' amax are all-reduced (max) through the
// Collective, then each rank quantizes its slice with its scales. Replicated
// tensors land on rank 0 only, and BroadcastReplicas copies them to the other
// ranks once every write has landed: host-to-device traffic does not grow
// with the number of ranks.
// Thread-safe: the shard writers of a load call it concurrently, each for its
// own tensors.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "services/device/collective.h"
#include "services/device/device_backend.h"
#include "services/load/arena.h"
#include "services/load/arena_lot.h"
#include "services/load/fused_scale_gate.h"
#include "services/load/planner.h"
#include "services/safetensors/header.h"

namespace weightd {

class TensorPlacer {
 public:
  // `plan` must outlive the placer; arenas and collective are per rank of the plan.
  TensorPlacer(const LoadPlan& plan, std::vector<std::shared_ptr<Arena>> arenas, DeviceBackend& backend,
               std::shared_ptr<Collective> collective);

  DeviceBackend& backend() const { return backend_; }

  // Whether a stored tensor is written as its bytes arrive (else the caller
  // gathers it and calls WriteWhole).
  static bool Streams(const TensorTask& task, const safetensors::TensorHeader& t);
  absl::Status WriteStreamed(const TensorTask& task, const safetensors::TensorHeader& t, uint64_t offset,
                             std::string_view bytes);
  absl::Status WriteWhole(const TensorTask& task, const safetensors::TensorHeader& t, const char* src);
  // `src`: the whole tensor. A NaN or Inf under kFail is INVALID_ARGUMENT (the
  // caller names the element: its index in the slice would mislead). `amax`:
  // the whole tensor's, all finite, where the caller took it while gathering;
  // used where every rank's one scale follows from it (TakesWholeAmax).
  absl::Status Quantize(const TensorTask& task, const safetensors::TensorHeader& t, const char* src,
                        kernels::NonFinitePolicy policy, std::optional<float> amax = std::nullopt);
  // A part of a fused output with one per-tensor scale (task.fused_scale >= 0):
  // its amax per rank, the whole tensor's (`amax` if the caller took it) under
  // scale scope `tensor`, each rank slice's under `shard`. A NaN or Inf under kFail
  // is INVALID_ARGUMENT (the caller names the element).
  absl::StatusOr<std::vector<float>> FusedAmax(const TensorTask& task, const safetensors::TensorHeader& t,
                                               const char* src, kernels::NonFinitePolicy policy,
                                               std::optional<float> amax);
  // Takes the part's whole bytes and amax (FusedAmax), and places them once every
  // part of the output has arrived, from whichever call brings the last
  // (FusedScaleGate).
  absl::Status QuantizeFused(const TensorTask& task, const safetensors::TensorHeader& t, GatherBuffer bytes,
                             std::vector<float> amax);
  // A peer's bytes, already quantized (services/peer): bytes [offset, +size) of
  // the whole tensor as an FP8 checkpoint holds it (a quantized tensor's E4M3
  // codes; a stored tensor as it came), onto the slice of every writing rank.
  absl::Status WriteRange(const TensorTask& task, const safetensors::TensorHeader& t, uint64_t offset,
                          std::string_view bytes);
  // A quantized tensor's scales over the whole tensor's tile grid (`whole`):
  // each writing rank gets its tiles (services/load/scale_tiles.h). Fewer scales
  // than the grid has is INVALID_ARGUMENT.
  absl::Status WriteScales(const TensorTask& task, const kernels::Tiling& whole, const std::vector<float>& scales);
  // Whether every rank's scale is the whole tensor's amax scaled: per-tensor,
  // and one rank, a replicated tensor, or scale scope `tensor`.
  static bool TakesWholeAmax(const TensorTask& task);
  // Every byte of the tensor was handed over: a replicated one is queued for
  // broadcast, a padded one (layout vllm) gets its zero rows.
  absl::Status Complete(const TensorTask& task);
  // Call after DeviceBackend::Synchronize of every rank's device. Holds
  // references to the arenas (not a lock) while a broadcast runs, so Release
  // does not wait for it: a broadcast that never returns keeps the memory it
  // writes reserved, and nothing else.
  absl::Status BroadcastReplicas();
  // A failed or aborted load: waits for the writes and quantizations in flight
  // (calls on one device, which end), not for a collective, then drops the
  // arenas (their memory is freed unless a manifest or a collective in flight
  // still holds them); every later call is ABORTED. Must not be called from
  // inside a placer call.
  void Release();

  // Host time the load's threads spent taking amaxes for scales (all threads together;
  // the amax a push takes while gathering a tensor is not counted).
  double scale_seconds() const { return static_cast<double>(scale_nanos_.load()) * 1e-9; }
  // Slices quantized through parking (DeviceBackend::parks_per_tensor), and of
  // those, the slices whose rest was held in the arena's lot.
  uint64_t parked_tensors() const { return parked_.load(); }
  uint64_t rests_in_arena() const { return rests_in_arena_.load(); }
  // The outputs whose memory the lot borrows where the backend parks rests in the
  // arena (parks_rest_in_arena), [rank][output]: those the plan's last tasks write
  // (from the last shard's last tensor back, until each rank's reach 1/8 of its
  // arena), less any that an earlier task also writes (a fused output).
  static std::vector<std::vector<bool>> LotOutputs(const LoadPlan& plan);

 private:
  std::vector<size_t> WritingRanks(const TensorTask& task) const;
  // Before a task writes: where it writes an output of the lot, the lot closes
  // (waits for its leases, then for the devices' work on them).
  absl::Status BeforeTask(const TensorTask& task);
  absl::Status CloseLot();
  bool Released();
  // Adds the time since `start` to the host time taken for scales.
  void CountScaleTime(std::chrono::steady_clock::time_point start);
  absl::Status Write(size_t rank, size_t tensor, uint64_t offset, std::string_view bytes);
  // Each writing rank's slice quantized with `scales[rank]` (where empty: the
  // slice's own tile scales, under `policy`), and the scales written.
  absl::Status PlaceQuantized(const TensorTask& task, const safetensors::TensorHeader& t, const char* src,
                              kernels::NonFinitePolicy policy, std::vector<std::vector<float>>& scales);
  // The offset in its arena of rank `rank`'s slice of the tensor.
  uint64_t OutputOffset(const TensorTask& task, size_t rank) const;
  // A per-tensor tensor parked (services/device/parked_tensor.h): each writing rank's
  // first rows stored in its destination with their amax taken on the way, the amax
  // of the rest taken on the host (all-reduced where the ranks share one scale), the
  // parked rows quantized in place and the rest after them, and the scales written.
  // False, with nothing written, where the tensor cannot park (a slice that is not one
  // byte range, too few rows, 1-byte elements).
  absl::StatusOr<bool> QuantizeParked(const TensorTask& task, const safetensors::TensorHeader& t, const char* src,
                                      kernels::NonFinitePolicy policy);
  absl::Status ScalesOf(const TensorTask& task, const safetensors::TensorHeader& t, const char* src,
                        kernels::NonFinitePolicy policy, std::vector<std::vector<float>>& scales);

  const LoadPlan& plan_;
  std::vector<std::shared_ptr<Arena>> arenas_;
  DeviceBackend& backend_;
  std::shared_ptr<Collective> collective_;

  std::mutex mu_;
  std::vector<const TensorTask*> replicas_;  // in completion order
  FusedScaleGate fused_;
  // Writes and quantizations hold it shared across their device call; Release
  // takes it exclusively. Collectives never hold it across a call.
  std::shared_mutex arenas_mu_;
  bool released_ = false;
  std::atomic<uint64_t> scale_nanos_{0};  // host time taking tile amaxes, all threads
  std::atomic<uint64_t> parked_{0};
  std::atomic<uint64_t> rests_in_arena_{0};
  // The lot (null where the backend parks no rest in the arena), and which outputs
  // of each rank it borrows.
  std::unique_ptr<ArenaLot> lot_;
  std::vector<std::vector<bool>> lot_outputs_;
};

}  // namespace weightd
