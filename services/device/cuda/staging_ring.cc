#include "services/device/cuda/staging_ring.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "base/seconds_since.h"
#include "base/status_macros.h"
#include "kernels/quantize_cuda.h"
#include "kernels/quantize_fast.h"
#include "services/device/chunk_scales.h"
#include "services/device/parked_tensor.h"
#include "services/device/cuda/cuda_check.h"

namespace weightd::cuda {
namespace {

constexpr uint64_t kAlignment = 256;
constexpr uint64_t kElementAlignment = 16;  // keeps chunk starts 16-byte aligned for the kernel

// The chunk of a tensor that one slot carries: elements [begin, end) and the tile
// rows of the scales they need.
struct Chunk {
  uint64_t begin = 0, end = 0;
  uint64_t first_tile_row = 0, tile_rows = 0;
};

Chunk NextChunk(const kernels::Tiling& t, uint64_t begin, uint64_t total, uint64_t max_elements,
                uint64_t max_scales) {
  Chunk c;
  c.begin = begin;
  uint64_t span = std::min(total - begin, max_elements);
  for (;;) {
    c.end = begin + span;
    c.first_tile_row = (begin / t.cols) / t.tile_rows;
    c.tile_rows = ((c.end - 1) / t.cols) / t.tile_rows - c.first_tile_row + 1;
    if (c.tile_rows * t.grid_cols() <= max_scales || span <= kElementAlignment) return c;
    span = std::max<uint64_t>(kElementAlignment, span / 2 / kElementAlignment * kElementAlignment);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<StagingRing>> StagingRing::Create(int device, uint64_t ring_bytes, int slots,
                                                                  HostPinnedAccounting* pinned, int copy_streams,
                                                                  GpuWaits waits) {
  std::unique_ptr<StagingRing> ring(new StagingRing(device, pinned));
  ring->waits_ = waits;
  WEIGHTD_CUDA_CHECK(cudaSetDevice(device));
  const uint64_t slot_bytes = ring_bytes / static_cast<uint64_t>(std::max(1, slots)) / kAlignment * kAlignment;
  if (slot_bytes < 64 * 1024) return absl::InvalidArgumentError("the staging ring needs at least 64 KiB per slot");
  ring->slot_scale_bytes_ = std::max<uint64_t>(4096, slot_bytes / 16 / kAlignment * kAlignment);
  ring->slot_data_bytes_ = slot_bytes - ring->slot_scale_bytes_;
  ring->device_bytes_ = slot_bytes * static_cast<uint64_t>(slots);
  ring->copy_streams_.assign(static_cast<size_t>(std::max(1, copy_streams)), nullptr);
  for (cudaStream_t& stream : ring->copy_streams_) {
    WEIGHTD_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  }
  WEIGHTD_CUDA_CHECK(cudaStreamCreateWithFlags(&ring->compute_stream_, cudaStreamNonBlocking));
  ring->copy_fences_.assign(ring->copy_streams_.size(), nullptr);
  for (cudaEvent_t& fence : ring->copy_fences_) {
    WEIGHTD_CUDA_CHECK(cudaEventCreateWithFlags(&fence, cudaEventDisableTiming));
  }
  ring->slots_.resize(static_cast<size_t>(slots));
  for (Slot& slot : ring->slots_) {
    ring->free_.push_back(&slot);
    WEIGHTD_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&slot.pinned), slot_bytes, cudaHostAllocDefault));
    ring->pinned_bytes_ += slot_bytes;
    if (pinned != nullptr) pinned->Add(slot_bytes);
    WEIGHTD_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&slot.device), slot_bytes));
    WEIGHTD_CUDA_CHECK(cudaEventCreateWithFlags(&slot.copied, cudaEventDisableTiming));
    WEIGHTD_CUDA_CHECK(cudaEventCreateWithFlags(
        &slot.done, cudaEventDisableTiming | (waits == GpuWaits::kSleep ? cudaEventBlockingSync : 0u)));
    if (waits == GpuWaits::kAuto) {
      WEIGHTD_CUDA_CHECK(
          cudaEventCreateWithFlags(&slot.done_sleeping, cudaEventDisableTiming | cudaEventBlockingSync));
    }
  }
  return ring;
}

StagingRing::~StagingRing() {
  cudaSetDevice(device_);
  for (cudaStream_t stream : copy_streams_) {
    if (stream != nullptr) cudaStreamSynchronize(stream);
  }
  if (compute_stream_ != nullptr) cudaStreamSynchronize(compute_stream_);
  for (Slot& slot : slots_) {
    if (slot.pinned != nullptr) cudaFreeHost(slot.pinned);
    if (slot.device != nullptr) cudaFree(slot.device);
    if (slot.copied != nullptr) cudaEventDestroy(slot.copied);
    if (slot.done != nullptr) cudaEventDestroy(slot.done);
    if (slot.done_sleeping != nullptr) cudaEventDestroy(slot.done_sleeping);
  }
  for (cudaStream_t stream : copy_streams_) {
    if (stream != nullptr) cudaStreamDestroy(stream);
  }
  for (cudaEvent_t fence : copy_fences_) {
    if (fence != nullptr) cudaEventDestroy(fence);
  }
  if (compute_stream_ != nullptr) cudaStreamDestroy(compute_stream_);
  if (pinned_ledger_ != nullptr) pinned_ledger_->Release(pinned_bytes_);
}

absl::StatusOr<StagingRing::Slot*> StagingRing::Acquire() {
  const auto start = std::chrono::steady_clock::now();
  Slot* slot = nullptr;
  {
    std::unique_lock<std::mutex> lock(mu_);
    slot_freed_.wait(lock, [&] { return !free_.empty(); });
    slot = free_.front();
    free_.pop_front();
  }
  cudaSetDevice(device_);
  const bool sleep = slot->done_sleeping != nullptr && SleepsOnGpuWaits(waits_);
  cudaError_t error = cudaEventSynchronize(sleep ? slot->done_sleeping : slot->done);
  const double waited = SecondsSince(start);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.wait_seconds += waited;
    ++stats_.chunks;
  }
  if (error != cudaSuccess) {
    Return(slot);
    return CudaError(error, "cudaEventSynchronize(slot done)", __FILE__, __LINE__);
  }
  return slot;
}

cudaError_t StagingRing::RecordDone(Slot& slot, cudaStream_t stream) {
  cudaError_t error = cudaEventRecord(slot.done, stream);
  if (error == cudaSuccess && slot.done_sleeping != nullptr) error = cudaEventRecord(slot.done_sleeping, stream);
  return error;
}

void StagingRing::Return(Slot* slot) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(slot);
  }
  slot_freed_.notify_one();
}

void StagingRing::Fill(uint8_t* pinned, const void* src, uint64_t n) {
  const auto start = std::chrono::steady_clock::now();
  std::memcpy(pinned, src, n);
  const double took = SecondsSince(start);
  std::lock_guard<std::mutex> lock(mu_);
  stats_.fill_seconds += took;
}

StagingRing::Stats StagingRing::TakeStats() {
  std::lock_guard<std::mutex> lock(mu_);
  Stats taken = stats_;
  stats_ = Stats{};
  return taken;
}

StagingRing::Staged StagingRing::Split(uint8_t* dst, const uint8_t* src, uint64_t n, uint8_t* staged,
                                       PinnedSpan pinned) {
  Staged s{dst, src, staged, n, 0, 0};
  if (!pinned.empty() && pinned.begin < src + n && pinned.end > src) {
    s.pinned_begin = static_cast<uint64_t>(std::max(pinned.begin, src) - src);
    s.pinned_end = static_cast<uint64_t>(std::min(pinned.end, src + n) - src);
  }
  return s;
}

void StagingRing::FillUnpinned(const Staged& s) {
  if (s.pinned_begin == s.pinned_end) {
    Fill(s.staged, s.src, s.n);
    return;
  }
  if (s.pinned_begin > 0) Fill(s.staged, s.src, s.pinned_begin);
  if (s.pinned_end < s.n) Fill(s.staged + s.pinned_end, s.src + s.pinned_end, s.n - s.pinned_end);
}

cudaError_t StagingRing::EnqueueLocked(const Staged& s, cudaStream_t stream) {
  stats_.h2d_bytes += s.n;
  if (s.pinned_begin == s.pinned_end) return cudaMemcpyAsync(s.dst, s.staged, s.n, cudaMemcpyHostToDevice, stream);
  stats_.in_place_bytes += s.pinned_end - s.pinned_begin;
  cudaError_t error = cudaSuccess;
  if (s.pinned_begin > 0) error = cudaMemcpyAsync(s.dst, s.staged, s.pinned_begin, cudaMemcpyHostToDevice, stream);
  if (error == cudaSuccess) {
    error = cudaMemcpyAsync(s.dst + s.pinned_begin, s.src + s.pinned_begin, s.pinned_end - s.pinned_begin,
                            cudaMemcpyHostToDevice, stream);
  }
  if (error == cudaSuccess && s.pinned_end < s.n) {
    error = cudaMemcpyAsync(s.dst + s.pinned_end, s.staged + s.pinned_end, s.n - s.pinned_end,
                            cudaMemcpyHostToDevice, stream);
  }
  return error;
}

absl::Status StagingRing::Write(uint8_t* dst, std::string_view bytes, PinnedSpan pinned) {
  // Shard threads feed the rings of several GPUs under tensor parallelism.
  WEIGHTD_CUDA_CHECK(cudaSetDevice(device_));
  const uint8_t* src = reinterpret_cast<const uint8_t*>(bytes.data());
  const Staged whole = Split(dst, src, bytes.size(), nullptr, pinned);
  if (whole.pinned_begin == whole.pinned_end) return WriteThroughSlots(dst, src, bytes.size());
  // Before the pinned part, the pinned part itself (no slot: straight to `dst`), after it.
  WEIGHTD_RETURN_IF_ERROR(WriteThroughSlots(dst, src, whole.pinned_begin));
  cudaError_t error;
  {
    const auto asked = std::chrono::steady_clock::now();
    std::lock_guard<std::mutex> lock(mu_);
    error = EnqueueLocked(Staged{dst + whole.pinned_begin, src + whole.pinned_begin, nullptr,
                                 whole.pinned_end - whole.pinned_begin, 0, whole.pinned_end - whole.pinned_begin},
                          TakeCopyStreamLocked());
    stats_.enqueue_seconds += SecondsSince(asked);
  }
  if (error != cudaSuccess) return CudaError(error, "cudaMemcpyAsync(pinned source)", __FILE__, __LINE__);
  return WriteThroughSlots(dst + whole.pinned_end, src + whole.pinned_end, bytes.size() - whole.pinned_end);
}

absl::Status StagingRing::WriteThroughSlots(uint8_t* dst, const uint8_t* src, uint64_t size, TakenAmax* amax) {
  const uint64_t slot_bytes = slot_data_bytes_ + slot_scale_bytes_;
  for (uint64_t done = 0; done < size;) {
    const uint64_t n = std::min<uint64_t>(slot_bytes, size - done);
    auto slot = Acquire();
    if (!slot.ok()) return slot.status();
    if (amax == nullptr) {
      Fill((*slot)->pinned, src + done, n);
    } else {  // the amax taken in the copy's own pass
      const auto start = std::chrono::steady_clock::now();
      absl::StatusOr<float> m = kernels::CopyAbsMaxFast(amax->dtype, (*slot)->pinned, src + done,
                                                        n / kernels::DTypeSize(amax->dtype), amax->policy);
      {
        std::lock_guard<std::mutex> lock(mu_);
        stats_.fill_seconds += SecondsSince(start);
      }
      if (!m.ok()) {
        Return(*slot);
        return m.status();
      }
      amax->value = std::max(amax->value, *m);
    }
    cudaError_t error;
    {
      const auto asked = std::chrono::steady_clock::now();
      std::lock_guard<std::mutex> lock(mu_);
      cudaStream_t stream = TakeCopyStreamLocked();
      error = cudaMemcpyAsync(dst + done, (*slot)->pinned, n, cudaMemcpyHostToDevice, stream);
      if (error == cudaSuccess) error = RecordDone(**slot, stream);
      stats_.h2d_bytes += n;
      stats_.enqueue_seconds += SecondsSince(asked);
    }
    Return(*slot);
    if (error != cudaSuccess) return CudaError(error, "cudaMemcpyAsync(write)", __FILE__, __LINE__);
    done += n;
  }
  return absl::OkStatus();
}

absl::StatusOr<float> StagingRing::WriteTakingAmax(uint8_t* dst, std::string_view bytes, kernels::DType dtype,
                                                   kernels::NonFinitePolicy policy, PinnedSpan pinned) {
  const uint8_t* src = reinterpret_cast<const uint8_t*>(bytes.data());
  const Staged whole = Split(dst, src, bytes.size(), nullptr, pinned);
  if (whole.pinned_begin != whole.pinned_end) {
    // Part of it is copied in place, past the slots: the amax in a pass of its own.
    absl::StatusOr<float> amax = kernels::AbsMaxFast(dtype, src, bytes.size() / kernels::DTypeSize(dtype), policy);
    if (!amax.ok()) return amax.status();
    WEIGHTD_RETURN_IF_ERROR(Write(dst, bytes, pinned));
    return *amax;
  }
  WEIGHTD_CUDA_CHECK(cudaSetDevice(device_));
  TakenAmax amax{dtype, policy};
  WEIGHTD_RETURN_IF_ERROR(WriteThroughSlots(dst, src, bytes.size(), &amax));
  return amax.value;
}

absl::Status StagingRing::QuantizeStored(uint8_t* stored, uint8_t* to, kernels::DType dtype,
                                         const kernels::Tiling& tiling, float scale) {
  const uint64_t element = kernels::DTypeSize(dtype);
  const uint64_t total = static_cast<uint64_t>(tiling.rows) * tiling.cols;
  if (element < 2) return absl::InternalError("1-byte elements are not parked");
  if (total == 0) return absl::OkStatus();
  WEIGHTD_CUDA_CHECK(cudaSetDevice(device_));
  auto slot = Acquire();
  if (!slot.ok()) return slot.status();
  Slot& s = **slot;
  std::memcpy(s.pinned + slot_data_bytes_, &scale, sizeof(float));
  const float* device_scale = reinterpret_cast<const float*>(s.device + slot_data_bytes_);
  cudaError_t error;
  {
    const auto asked = std::chrono::steady_clock::now();
    std::lock_guard<std::mutex> lock(mu_);
    error = cudaMemcpyAsync(s.device + slot_data_bytes_, s.pinned + slot_data_bytes_, sizeof(float),
                            cudaMemcpyHostToDevice, TakeCopyStreamLocked());
    stats_.h2d_bytes += sizeof(float);
    // After every copy so far: the stored bytes' (this thread's, enqueued before) and the scale's.
    for (size_t i = 0; i < copy_streams_.size() && error == cudaSuccess; ++i) {
      error = cudaEventRecord(copy_fences_[i], copy_streams_[i]);
      if (error == cudaSuccess) error = cudaStreamWaitEvent(compute_stream_, copy_fences_[i], 0);
    }
    // Elsewhere: one step. In place: runs of elements (a per-tensor kernel needs no
    // whole rows), the first one's codes in the slot's device buffer.
    if (to != stored && error == cudaSuccess) {
      error = static_cast<cudaError_t>(
          kernels::cuda::LaunchQuantize(dtype, stored, tiling, device_scale, 0, total, to, compute_stream_));
    }
    for (const ParkedRun& run : to != stored ? std::vector<ParkedRun>{} : ParkedRuns(total, slot_data_bytes_)) {
      if (error != cudaSuccess) break;
      const uint64_t begin = run.begin, end = run.end;
      uint8_t* out = run.in_place ? stored + begin : s.device;
      error = static_cast<cudaError_t>(kernels::cuda::LaunchQuantize(dtype, stored + begin * element, tiling,
                                                                     device_scale, begin, end, out, compute_stream_));
      if (error == cudaSuccess && !run.in_place) {
        error = cudaMemcpyAsync(stored + begin, s.device, end - begin, cudaMemcpyDeviceToDevice, compute_stream_);
      }
    }
    if (error == cudaSuccess) error = RecordDone(s, compute_stream_);
    stats_.enqueue_seconds += SecondsSince(asked);
  }
  Return(&s);
  if (error != cudaSuccess) return CudaError(error, "quantize stored bytes", __FILE__, __LINE__);
  return absl::OkStatus();
}

std::function<bool()> StagingRing::KernelsMarker() {
  cudaSetDevice(device_);
  cudaEvent_t event = nullptr;
  cudaError_t error = cudaEventCreateWithFlags(&event, cudaEventDisableTiming);
  if (error == cudaSuccess) {
    std::lock_guard<std::mutex> lock(mu_);
    error = cudaEventRecord(event, compute_stream_);
  }
  if (error != cudaSuccess) {  // no event: wait for the kernels here instead
    cudaGetLastError();
    if (event != nullptr) cudaEventDestroy(event);
    cudaStreamSynchronize(compute_stream_);
    return nullptr;
  }
  std::shared_ptr<CUevent_st> owned(event, [](cudaEvent_t e) { cudaEventDestroy(e); });
  // An error other than "not ready" is the load's to report (Synchronize); the
  // kernels are not running then.
  return [owned] { return cudaEventQuery(owned.get()) != cudaErrorNotReady; };
}

void StagingRing::FenceCopies() {
  cudaSetDevice(device_);
  const unsigned sleep_flag = SleepsOnGpuWaits(waits_) ? cudaEventBlockingSync : 0u;
  std::vector<cudaEvent_t> fences(copy_streams_.size(), nullptr);
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < copy_streams_.size(); ++i) {
      if (cudaEventCreateWithFlags(&fences[i], cudaEventDisableTiming | sleep_flag) != cudaSuccess ||
          cudaEventRecord(fences[i], copy_streams_[i]) != cudaSuccess) {
        cudaGetLastError();
        if (fences[i] != nullptr) cudaEventDestroy(fences[i]);
        fences[i] = nullptr;
      }
    }
  }
  for (size_t i = 0; i < fences.size(); ++i) {
    if (fences[i] == nullptr) {
      cudaStreamSynchronize(copy_streams_[i]);  // no event: wait for the whole stream
      continue;
    }
    cudaEventSynchronize(fences[i]);
    cudaEventDestroy(fences[i]);
  }
}

absl::Status StagingRing::EnqueueChunk(Slot& s, const Staged& staged, const float* chunk_scales, uint64_t scale_count,
                                       kernels::DType dtype, const kernels::Tiling& tiling, uint64_t begin,
                                       uint64_t end, uint8_t* dst) {
  std::memcpy(s.pinned + slot_data_bytes_, chunk_scales, scale_count * sizeof(float));
  cudaError_t error;
  {
    const auto asked = std::chrono::steady_clock::now();
    std::lock_guard<std::mutex> lock(mu_);
    cudaStream_t stream = TakeCopyStreamLocked();
    error = EnqueueLocked(staged, stream);
    stats_.h2d_bytes += scale_count * sizeof(float);
    if (error == cudaSuccess) {
      error = cudaMemcpyAsync(s.device + slot_data_bytes_, s.pinned + slot_data_bytes_, scale_count * sizeof(float),
                              cudaMemcpyHostToDevice, stream);
    }
    if (error == cudaSuccess) error = cudaEventRecord(s.copied, stream);
    if (error == cudaSuccess) error = cudaStreamWaitEvent(compute_stream_, s.copied, 0);
    if (error == cudaSuccess) {
      error = static_cast<cudaError_t>(kernels::cuda::LaunchQuantize(
          dtype, s.device, tiling, reinterpret_cast<const float*>(s.device + slot_data_bytes_), begin, end,
          dst + begin, compute_stream_));
    }
    if (error == cudaSuccess) error = RecordDone(s, compute_stream_);
    stats_.enqueue_seconds += SecondsSince(asked);
  }
  Return(&s);
  if (error != cudaSuccess) return CudaError(error, "quantize chunk", __FILE__, __LINE__);
  return absl::OkStatus();
}

absl::Status StagingRing::Quantize(uint8_t* dst, kernels::DType dtype, const void* src,
                                   const kernels::Tiling& tiling, const float* scales, PinnedSpan pinned) {
  WEIGHTD_CUDA_CHECK(cudaSetDevice(device_));
  const uint64_t element_size = kernels::DTypeSize(dtype);
  const uint64_t total = static_cast<uint64_t>(tiling.rows) * tiling.cols;
  const uint64_t max_elements = slot_data_bytes_ / element_size / kElementAlignment * kElementAlignment;
  const uint64_t max_scales = slot_scale_bytes_ / sizeof(float);
  const uint64_t grid_cols = tiling.grid_cols();
  for (uint64_t begin = 0; begin < total;) {
    Chunk chunk = NextChunk(tiling, begin, total, max_elements, max_scales);
    const uint64_t data_bytes = (chunk.end - chunk.begin) * element_size;
    auto slot = Acquire();
    if (!slot.ok()) return slot.status();
    Slot& s = **slot;
    const Staged staged = Split(s.device, static_cast<const uint8_t*>(src) + chunk.begin * element_size, data_bytes,
                                s.pinned, pinned);
    FillUnpinned(staged);
    WEIGHTD_RETURN_IF_ERROR(EnqueueChunk(s, staged, scales + chunk.first_tile_row * grid_cols,
                                         chunk.tile_rows * grid_cols, dtype, tiling, chunk.begin, chunk.end, dst));
    begin = chunk.end;
  }
  return absl::OkStatus();
}

absl::Status StagingRing::QuantizeTakingScales(uint8_t* dst, kernels::Scheme scheme, kernels::DType dtype,
                                               const void* src, const kernels::Tiling& tiling,
                                               kernels::NonFinitePolicy policy, float* scales, PinnedSpan pinned) {
  const uint64_t element_size = kernels::DTypeSize(dtype);
  const uint64_t total = static_cast<uint64_t>(tiling.rows) * tiling.cols;
  const uint8_t* bytes = static_cast<const uint8_t*>(src);
  const uint64_t per_slot = TileRowsPerChunk(dtype, tiling, slot_data_bytes_, slot_scale_bytes_ / sizeof(float));
  const Staged whole = Split(nullptr, bytes, total * element_size, nullptr, pinned);
  const bool in_place = whole.pinned_begin != whole.pinned_end;
  if (per_slot == 0 || in_place || total == 0) {
    return absl::FailedPreconditionError("the scales cannot be taken from the ring's slots for this tensor");
  }
  WEIGHTD_CUDA_CHECK(cudaSetDevice(device_));
  const uint64_t grid_cols = tiling.grid_cols();
  const uint64_t tile_row_elements = static_cast<uint64_t>(tiling.tile_rows) * tiling.cols;
  for (uint64_t tile_row = 0; tile_row * tile_row_elements < total; tile_row += per_slot) {
    const uint64_t begin = tile_row * tile_row_elements;
    const uint64_t end = std::min(total, (tile_row + per_slot) * tile_row_elements);
    const uint64_t chunk_tile_rows = std::min<uint64_t>(per_slot, tiling.grid_rows() - tile_row);
    auto slot = Acquire();
    if (!slot.ok()) return slot.status();
    Slot& s = **slot;
    const Staged staged = Split(s.device, bytes + begin * element_size, (end - begin) * element_size, s.pinned,
                                PinnedSpan{});
    // The chunk copied into the slot with its scales taken in the same pass (counted
    // as filling).
    double fill_seconds = 0;
    absl::Status taken = CopyTakingChunkScales(scheme, dtype, tiling, tile_row, chunk_tile_rows, src, s.pinned,
                                               policy, scales + tile_row * grid_cols, fill_seconds);
    {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.fill_seconds += fill_seconds;
      if (taken.ok()) ++stats_.scaled_chunks;
    }
    if (!taken.ok()) {
      Return(&s);
      return taken;
    }
    WEIGHTD_RETURN_IF_ERROR(EnqueueChunk(s, staged, scales + tile_row * grid_cols, chunk_tile_rows * grid_cols,
                                         dtype, tiling, begin, end, dst));
  }
  return absl::OkStatus();
}

absl::Status StagingRing::Synchronize() {
  WEIGHTD_CUDA_CHECK(cudaSetDevice(device_));
  for (cudaStream_t stream : copy_streams_) WEIGHTD_CUDA_CHECK(cudaStreamSynchronize(stream));
  WEIGHTD_CUDA_CHECK(cudaStreamSynchronize(compute_stream_));
  return absl::OkStatus();
}

}  // namespace weightd::cuda
