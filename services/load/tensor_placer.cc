#include "services/load/tensor_placer.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "kernels/quantize_fast.h"
#include "services/device/parked_tensor.h"
#include "services/load/scale_tiles.h"
#include "services/load/slice_amax.h"

namespace weightd {
namespace {

SliceBytes SliceOf(const TensorTask& task, size_t rank, const safetensors::TensorHeader& t) {
  return SliceBytesOf(task.split, rank, t.shape, kernels::DTypeSize(t.dtype));
}

std::string_view AsBytes(const std::vector<float>& values) {
  return {reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float)};
}

}  // namespace

TensorPlacer::TensorPlacer(const LoadPlan& plan, std::vector<std::shared_ptr<Arena>> arenas, DeviceBackend& backend,
                           std::shared_ptr<Collective> collective)
    : plan_(plan),
      arenas_(std::move(arenas)),
      backend_(backend),
      collective_(std::move(collective)),
      fused_(plan) {
  if (!backend_.parks_per_tensor() || !backend_.parks_rest_in_arena()) return;
  lot_outputs_ = LotOutputs(plan_);
  std::vector<std::vector<ArenaLot::Region>> regions(plan_.ranks.size());
  for (size_t r = 0; r < regions.size(); ++r) {
    for (size_t k = 0; k < lot_outputs_[r].size(); ++k) {
      const OutputTensor& out = plan_.ranks[r].tensors[k];
      if (lot_outputs_[r][k] && out.size > 0) regions[r].push_back({out.offset, out.size});
    }
  }
  lot_ = std::make_unique<ArenaLot>(std::move(regions));
}

std::vector<std::vector<bool>> TensorPlacer::LotOutputs(const LoadPlan& plan) {
  const size_t ranks = plan.ranks.size();
  std::vector<std::vector<bool>> chosen(ranks);
  std::vector<uint64_t> reach(ranks, 0);
  for (size_t r = 0; r < ranks; ++r) chosen[r].assign(plan.ranks[r].tensors.size(), false);
  auto enough = [&] {
    for (size_t r = 0; r < ranks; ++r) {
      if (reach[r] < plan.ranks[r].arena_bytes / 8) return false;
    }
    return true;
  };
  // Each task's outputs on each rank: its destination and, quantized, its scales.
  auto for_outputs = [&](const TensorTask& task, const std::function<void(size_t, size_t)>& f) {
    for (size_t r = 0; r < task.parts.size() && r < ranks; ++r) {
      f(r, task.parts[r].output);
      if (task.kind == TaskKind::kQuantize) f(r, task.parts[r].scale);
    }
  };
  // The tasks in the order of the sources; the lot's are the last, from `first` on.
  std::vector<const TensorTask*> order;
  for (const std::vector<TensorTask>& shard : plan.tasks) {
    for (const TensorTask& task : shard) order.push_back(&task);
  }
  size_t first = order.size();
  while (first > 0 && !enough()) {
    for_outputs(*order[--first], [&](size_t r, size_t k) {
      if (k >= chosen[r].size() || chosen[r][k]) return;
      chosen[r][k] = true;
      reach[r] += plan.ranks[r].tensors[k].size;
    });
  }
  // Outputs that a task before the lot's also writes (fused outputs) stay out.
  for (size_t i = 0; i < first; ++i) {
    for_outputs(*order[i], [&](size_t r, size_t k) {
      if (k < chosen[r].size()) chosen[r][k] = false;
    });
  }
  return chosen;
}

absl::Status TensorPlacer::BeforeTask(const TensorTask& task) {
  if (lot_ == nullptr) return absl::OkStatus();
  for (size_t r = 0; r < task.parts.size() && r < lot_outputs_.size(); ++r) {
    const RankPart& part = task.parts[r];
    const bool output = part.output < lot_outputs_[r].size() && lot_outputs_[r][part.output];
    const bool scale = task.kind == TaskKind::kQuantize && part.scale < lot_outputs_[r].size() &&
                       lot_outputs_[r][part.scale];
    if (output || scale) return CloseLot();
  }
  return absl::OkStatus();
}

absl::Status TensorPlacer::CloseLot() {
  if (lot_ == nullptr) return absl::OkStatus();
  return lot_->Close([this] {
    for (const RankPlan& rank : plan_.ranks) WEIGHTD_RETURN_IF_ERROR(backend_.Synchronize(rank.device));
    return absl::OkStatus();
  });
}

std::vector<size_t> TensorPlacer::WritingRanks(const TensorTask& task) const {
  if (task.split.replicated()) return {0};
  std::vector<size_t> ranks(task.parts.size());
  for (size_t r = 0; r < ranks.size(); ++r) ranks[r] = r;
  return ranks;
}

absl::Status TensorPlacer::Write(size_t rank, size_t tensor, uint64_t offset, std::string_view bytes) {
  std::shared_lock<std::shared_mutex> lock(arenas_mu_);
  if (released_) return absl::AbortedError("load aborted");
  return backend_.Write(arenas_[rank]->allocation(), plan_.ranks[rank].tensors[tensor].offset + offset, bytes);
}

uint64_t TensorPlacer::OutputOffset(const TensorTask& task, size_t rank) const {
  return plan_.ranks[rank].tensors[task.parts[rank].output].offset + task.parts[rank].output_offset;
}

bool TensorPlacer::Streams(const TensorTask& task, const safetensors::TensorHeader& t) {
  if (task.kind != TaskKind::kStore) return false;
  for (size_t r = 0; r < task.parts.size(); ++r) {
    if (!SliceOf(task, r, t).contiguous()) return false;
  }
  return true;
}

absl::Status TensorPlacer::WriteStreamed(const TensorTask& task, const safetensors::TensorHeader& t, uint64_t offset,
                                         std::string_view bytes) {
  // Each rank's slice is one byte range: one piece, no copy (WriteRange closes the lot where it must).
  return WriteRange(task, t, offset, bytes);
}

absl::Status TensorPlacer::WriteWhole(const TensorTask& task, const safetensors::TensorHeader& t, const char* src) {
  WEIGHTD_RETURN_IF_ERROR(BeforeTask(task));
  std::string buffer;
  for (size_t r : WritingRanks(task)) {
    const SliceBytes slice = SliceOf(task, r, t);
    buffer.resize(slice.size());
    GatherSlice(slice, src, buffer.data());
    WEIGHTD_RETURN_IF_ERROR(Write(r, task.parts[r].output, task.parts[r].output_offset, buffer));
  }
  return absl::OkStatus();
}

absl::Status TensorPlacer::WriteRange(const TensorTask& task, const safetensors::TensorHeader& t, uint64_t offset,
                                      std::string_view bytes) {
  WEIGHTD_RETURN_IF_ERROR(BeforeTask(task));
  const size_t element = task.kind == TaskKind::kQuantize ? 1 : kernels::DTypeSize(t.dtype);
  std::string buffer;
  for (size_t r : WritingRanks(task)) {
    const SliceBytes slice = SliceBytesOf(task.split, r, t.shape, element);
    std::vector<std::string_view> pieces;
    const SliceWindow window = ForEachPieceIn(slice, offset, offset + bytes.size(),
                                              [&](uint64_t whole, uint64_t, uint64_t n) {
                                                pieces.push_back(bytes.substr(whole - offset, n));
                                              });
    if (window.empty()) continue;
    std::string_view run = pieces[0];  // one piece goes as it is; several are joined
    if (pieces.size() > 1) {
      buffer.clear();
      for (std::string_view p : pieces) buffer.append(p);
      run = buffer;
    }
    const RankPart& part = task.parts[r];
    WEIGHTD_RETURN_IF_ERROR(Write(r, part.output, part.output_offset + window.local_begin, run));
  }
  return absl::OkStatus();
}

absl::Status TensorPlacer::WriteScales(const TensorTask& task, const kernels::Tiling& whole,
                                       const std::vector<float>& scales) {
  WEIGHTD_RETURN_IF_ERROR(BeforeTask(task));
  if (scales.size() < whole.num_tiles()) {
    return absl::InvalidArgumentError(
        absl::StrCat(scales.size(), " scales for a tile grid of ", whole.num_tiles()));
  }
  std::vector<float> own;
  for (size_t r : WritingRanks(task)) {
    own.clear();
    for (size_t tile : WholeTilesOfRank(task, r, whole)) {
      if (tile >= scales.size()) return absl::InternalError("a rank's tile lies outside the whole tensor's grid");
      own.push_back(scales[tile]);
    }
    WEIGHTD_RETURN_IF_ERROR(Write(r, task.parts[r].scale, task.parts[r].scale_offset, AsBytes(own)));
  }
  return absl::OkStatus();
}

// Scale scope `tensor` across ranks: each rank's amax, the maximum over all of
// them, then the scale formula, so every rank scales as the whole tensor would be.
absl::Status TensorPlacer::ScalesOf(const TensorTask& task, const safetensors::TensorHeader& t, const char* src,
                                    kernels::NonFinitePolicy policy, std::vector<std::vector<float>>& scales) {
  const bool per_row = task.scheme == kernels::Scheme::kPerChannel;
  std::vector<std::vector<float>> amax(task.parts.size());
  const auto start = std::chrono::steady_clock::now();
  for (size_t r = 0; r < task.parts.size(); ++r) {
    const SliceBytes slice = SliceOf(task, r, t);
    if (per_row && slice.segments != task.parts[r].tiling.rows) {
      return absl::InternalError(absl::StrCat("tensor '", t.name, "': per-channel amax of a slice that is not a row split"));
    }
    WEIGHTD_RETURN_IF_ERROR(SliceAmax(t.dtype, src, slice, per_row, policy, amax[r]));
  }
  CountScaleTime(start);
  WEIGHTD_RETURN_IF_ERROR(collective_->AllReduceMax(amax));
  for (size_t r = 0; r < task.parts.size(); ++r) {
    scales[r].resize(amax[r].size());
    std::transform(amax[r].begin(), amax[r].end(), scales[r].begin(), kernels::ScaleFromAmax);
  }
  return absl::OkStatus();
}

void TensorPlacer::CountScaleTime(std::chrono::steady_clock::time_point start) {
  scale_nanos_ += static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count());
}

bool TensorPlacer::TakesWholeAmax(const TensorTask& task) {
  if (task.kind != TaskKind::kQuantize || task.scheme != kernels::Scheme::kPerTensor) return false;
  for (const RankPart& part : task.parts) {
    if (part.tiling.num_tiles() != 1) return false;
  }
  return task.parts.size() == 1 || task.split.replicated() || task.reduce_amax;
}

absl::Status TensorPlacer::Quantize(const TensorTask& task, const safetensors::TensorHeader& t, const char* src,
                                    kernels::NonFinitePolicy policy, std::optional<float> amax) {
  WEIGHTD_RETURN_IF_ERROR(BeforeTask(task));
  std::vector<std::vector<float>> scales(task.parts.size());
  const bool whole = amax.has_value() && TakesWholeAmax(task);
  if (!whole && backend_.parks_per_tensor() && task.scheme == kernels::Scheme::kPerTensor) {
    absl::StatusOr<bool> parked = QuantizeParked(task, t, src, policy);
    if (!parked.ok() || *parked) return parked.status();
  }
  if (whole) {
    for (std::vector<float>& rank : scales) rank.assign(1, kernels::ScaleFromAmax(*amax));
  } else if (task.reduce_amax) {
    WEIGHTD_RETURN_IF_ERROR(ScalesOf(task, t, src, policy, scales));
  }
  return PlaceQuantized(task, t, src, policy, scales);
}

absl::Status TensorPlacer::PlaceQuantized(const TensorTask& task, const safetensors::TensorHeader& t, const char* src,
                                          kernels::NonFinitePolicy policy, std::vector<std::vector<float>>& scales) {
  std::string buffer;
  for (size_t r : WritingRanks(task)) {
    const RankPart& part = task.parts[r];
    const SliceBytes slice = SliceOf(task, r, t);
    const char* bytes = src + slice.first;
    if (!slice.contiguous()) {
      buffer.resize(slice.size());
      GatherSlice(slice, src, buffer.data());
      bytes = buffer.data();
    }
    const uint64_t offset = OutputOffset(task, r);
    bool quantized = false;
    if (scales[r].empty()) {  // the slice's own scales
      scales[r].resize(part.tiling.num_tiles());
      if (backend_.takes_scales_while_copying() && task.scheme != kernels::Scheme::kPerTensor) {
        // Taken from the backend's copies on the way: the bytes are read once.
        std::shared_lock<std::shared_mutex> lock(arenas_mu_);
        if (released_) return absl::AbortedError("load aborted");
        const absl::Status taken = backend_.QuantizeTakingScales(arenas_[r]->allocation(), offset, task.scheme,
                                                                 t.dtype, bytes, part.tiling, policy, scales[r].data());
        if (!taken.ok() && !absl::IsFailedPrecondition(taken)) return taken;
        quantized = taken.ok();
      }
      if (!quantized) {
        const auto start = std::chrono::steady_clock::now();
        const absl::Status taken =
            kernels::TileScalesFast(task.scheme, t.dtype, bytes, part.tiling, policy, scales[r].data());
        CountScaleTime(start);
        WEIGHTD_RETURN_IF_ERROR(taken);
      }
    }
    if (!quantized) {
      std::shared_lock<std::shared_mutex> lock(arenas_mu_);
      if (released_) return absl::AbortedError("load aborted");
      WEIGHTD_RETURN_IF_ERROR(
          backend_.Quantize(arenas_[r]->allocation(), offset, t.dtype, bytes, part.tiling, scales[r].data()));
    }
    WEIGHTD_RETURN_IF_ERROR(Write(r, part.scale, part.scale_offset, AsBytes(scales[r])));
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> TensorPlacer::QuantizeParked(const TensorTask& task, const safetensors::TensorHeader& t,
                                                  const char* src, kernels::NonFinitePolicy policy) {
  // Each writing rank's slice: its bytes, where it lands, and how many of its rows park.
  struct Slice {
    size_t rank;
    std::string_view bytes;
    uint64_t offset, rows, cols, parked_rows, parked_bytes;
  };
  const uint64_t element = kernels::DTypeSize(t.dtype);
  std::vector<Slice> slices;
  for (size_t r : WritingRanks(task)) {
    const RankPart& part = task.parts[r];
    const SliceBytes slice = SliceOf(task, r, t);
    const uint64_t parked_rows = ParkableRows(t.dtype, part.tiling.rows);
    if (part.tiling.num_tiles() != 1 || parked_rows == 0 || !slice.contiguous()) return false;
    slices.push_back({r, std::string_view(src + slice.first, slice.size()), OutputOffset(task, r), part.tiling.rows,
                      part.tiling.cols, parked_rows, parked_rows * part.tiling.cols * element});
  }
  // Each rank's first rows go to its destination, their amax taken on the way.
  std::vector<std::vector<float>> amax(task.parts.size(), std::vector<float>(1, 0.0f));
  for (const Slice& s : slices) {
    absl::StatusOr<float> parked;
    {
      std::shared_lock<std::shared_mutex> lock(arenas_mu_);
      if (released_) return absl::AbortedError("load aborted");
      parked = backend_.WriteTakingAmax(arenas_[s.rank]->allocation(), s.offset, t.dtype,
                                        s.bytes.substr(0, s.parked_bytes), policy);
    }
    if (!parked.ok()) return parked.status();
    amax[s.rank][0] = *parked;
  }
  // The rest: held in the lot where it has room (its amax taken as it is copied),
  // else its amax taken on the host; then the ranks' maximum where they share a scale.
  std::vector<std::optional<ArenaLot::Lease>> held(slices.size());
  for (size_t i = 0; i < slices.size() && lot_ != nullptr; ++i) {
    const Slice& s = slices[i];
    const std::string_view rest = s.bytes.substr(s.parked_bytes);
    if (rest.empty() || !(held[i] = lot_->TryLease(s.rank, rest.size()))) continue;
    absl::StatusOr<float> m;
    {
      std::shared_lock<std::shared_mutex> lock(arenas_mu_);
      if (released_) return absl::AbortedError("load aborted");
      m = backend_.WriteTakingAmax(arenas_[s.rank]->allocation(), held[i]->offset(), t.dtype, rest, policy);
    }
    if (!m.ok()) return m.status();
    amax[s.rank][0] = std::max(amax[s.rank][0], *m);
  }
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < slices.size(); ++i) {
    const Slice& s = slices[i];
    if (held[i]) continue;
    std::vector<float> rest;
    const absl::Status taken = SliceAmax(t.dtype, s.bytes.data() + s.parked_bytes,
                                         SliceBytes{0, 1, s.bytes.size() - s.parked_bytes, 0}, false, policy, rest);
    if (!taken.ok()) {
      CountScaleTime(start);
      return taken;
    }
    if (!rest.empty()) amax[s.rank][0] = std::max(amax[s.rank][0], rest[0]);
  }
  CountScaleTime(start);
  if (task.reduce_amax) WEIGHTD_RETURN_IF_ERROR(collective_->AllReduceMax(amax));
  // Each rank: its parked rows converted in place, the rest quantized after them
  // (from the lot, which gets its range back once the device has read it).
  for (size_t i = 0; i < slices.size(); ++i) {
    const Slice& s = slices[i];
    const float scale = kernels::ScaleFromAmax(amax[s.rank][0]);
    const kernels::Tiling rest = kernels::TilingFor(kernels::Scheme::kPerTensor, s.rows - s.parked_rows, s.cols);
    const uint64_t rest_offset = s.offset + s.parked_rows * s.cols;
    {
      std::shared_lock<std::shared_mutex> lock(arenas_mu_);
      if (released_) return absl::AbortedError("load aborted");
      DeviceAllocation& alloc = arenas_[s.rank]->allocation();
      WEIGHTD_RETURN_IF_ERROR(backend_.QuantizeStored(
          alloc, s.offset, s.offset, t.dtype, kernels::TilingFor(kernels::Scheme::kPerTensor, s.parked_rows, s.cols),
          scale));
      if (held[i]) {
        WEIGHTD_RETURN_IF_ERROR(backend_.QuantizeStored(alloc, held[i]->offset(), rest_offset, t.dtype, rest, scale));
        held[i]->Return(backend_.StoredQuantizedMarker(plan_.ranks[s.rank].device));
        ++rests_in_arena_;
      } else {
        WEIGHTD_RETURN_IF_ERROR(
            backend_.Quantize(alloc, rest_offset, t.dtype, s.bytes.data() + s.parked_bytes, rest, &scale));
      }
      ++parked_;
    }
    const RankPart& part = task.parts[s.rank];
    WEIGHTD_RETURN_IF_ERROR(Write(s.rank, part.scale, part.scale_offset, AsBytes({scale})));
  }
  return true;
}

absl::StatusOr<std::vector<float>> TensorPlacer::FusedAmax(const TensorTask& task, const safetensors::TensorHeader& t,
                                                           const char* src, kernels::NonFinitePolicy policy,
                                                           std::optional<float> amax) {
  if (task.reduce_amax) {  // scale scope `tensor`: the whole tensor's amax on every rank
    if (!amax) {  // the vectorized pass of SliceAmax over the whole tensor (the reference runs at a fifth of it)
      std::vector<float> whole;
      WEIGHTD_RETURN_IF_ERROR(SliceAmax(t.dtype, src, SliceBytes{0, 1, t.size(), 0}, false, policy, whole));
      amax = whole[0];
    }
    return std::vector<float>(task.parts.size(), *amax);
  }
  std::vector<float> per_rank;
  for (size_t r = 0; r < task.parts.size(); ++r) {
    std::vector<float> slice_amax;
    WEIGHTD_RETURN_IF_ERROR(SliceAmax(t.dtype, src, SliceOf(task, r, t), false, policy, slice_amax));
    per_rank.push_back(slice_amax.empty() ? 0.0f : slice_amax[0]);
  }
  return per_rank;
}

absl::Status TensorPlacer::QuantizeFused(const TensorTask& task, const safetensors::TensorHeader& t, GatherBuffer bytes,
                                         std::vector<float> amax) {
  WEIGHTD_RETURN_IF_ERROR(BeforeTask(task));  // the parts share their output
  FusedScaleGate::Part part{&task, &t, std::move(bytes), std::move(amax), nullptr};
  std::optional<FusedScaleGate::Ready> ready = fused_.Add(task.fused_scale, std::move(part));
  if (!ready) return absl::OkStatus();
  absl::Status placed = absl::OkStatus();
  for (FusedScaleGate::Part& p : ready->parts) {
    if (placed.ok()) {
      std::vector<std::vector<float>> scales(p.task->parts.size());
      for (size_t r = 0; r < scales.size(); ++r) scales[r].assign(1, kernels::ScaleFromAmax(ready->amax[r]));
      // The scales are given, so the policy (for a slice's own scales) is not consulted.
      placed = PlaceQuantized(*p.task, *p.header, p.bytes.data(), kernels::NonFinitePolicy::kFail, scales);
    }
    p.bytes = GatherBuffer();
    if (p.release) p.release();
  }
  return placed;
}

absl::Status TensorPlacer::Complete(const TensorTask& task) {
  WEIGHTD_RETURN_IF_ERROR(BeforeTask(task));
  for (size_t r = 0; r < task.parts.size(); ++r) {
    static const std::string kZeros(uint64_t{1} << 20, '\0');
    const RankPart& part = task.parts[r];
    for (uint64_t done = 0; done < part.padding_bytes;) {
      const uint64_t n = std::min<uint64_t>(kZeros.size(), part.padding_bytes - done);
      WEIGHTD_RETURN_IF_ERROR(Write(r, part.output, part.padding_offset + done, std::string_view(kZeros.data(), n)));
      done += n;
    }
  }
  if (!task.split.replicated() || task.parts.size() < 1) return absl::OkStatus();
  std::lock_guard<std::mutex> lock(mu_);
  replicas_.push_back(&task);
  return absl::OkStatus();
}

void TensorPlacer::Release() {
  if (lot_ != nullptr) lot_->Abort();  // a reader waiting to close it stops waiting
  fused_.Clear();
  std::unique_lock<std::shared_mutex> lock(arenas_mu_);
  released_ = true;
  arenas_.clear();
}

absl::Status TensorPlacer::BroadcastReplicas() {
  // The arenas are taken, not locked: a broadcast waits on the other ranks and
  // may never return, and Release must not wait for it. These references keep
  // the memory the collective writes until it returns.
  WEIGHTD_RETURN_IF_ERROR(CloseLot());  // where no task of the lot's closed it
  std::vector<std::shared_ptr<Arena>> arenas;
  {
    std::shared_lock<std::shared_mutex> arenas_lock(arenas_mu_);
    if (released_) return absl::AbortedError("load aborted");
    arenas = arenas_;
  }
  std::vector<const TensorTask*> replicas;
  {
    std::lock_guard<std::mutex> lock(mu_);
    replicas.swap(replicas_);
  }
  for (const TensorTask* task : replicas) {
    std::vector<size_t> outputs = {task->parts[0].output};
    if (task->kind == TaskKind::kQuantize) outputs.push_back(task->parts[0].scale);
    for (size_t o = 0; o < outputs.size(); ++o) {
      std::vector<RankRegion> regions;
      for (size_t r = 0; r < task->parts.size(); ++r) {
        const size_t tensor = o == 0 ? task->parts[r].output : task->parts[r].scale;
        regions.push_back({&arenas[r]->allocation(), plan_.ranks[r].tensors[tensor].offset});
      }
      const uint64_t size = plan_.ranks[0].tensors[outputs[o]].size;
      if (size == 0) continue;
      if (Released()) return absl::AbortedError("load aborted");
      WEIGHTD_RETURN_IF_ERROR(collective_->Broadcast(0, regions, size));
    }
  }
  return absl::OkStatus();
}

bool TensorPlacer::Released() {
  std::shared_lock<std::shared_mutex> lock(arenas_mu_);
  return released_;
}

}  // namespace weightd
