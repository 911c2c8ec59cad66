#include "services/load/slice_amax.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <thread>

#include "kernels/quantize_fast.h"
#include "kernels/stream_copy.h"

namespace weightd {
namespace {

bool Tracked(kernels::DType dtype) {
  return dtype == kernels::DType::kBF16 || dtype == kernels::DType::kF16 || dtype == kernels::DType::kF32;
}

// Below this many elements per thread, more threads cost more than they save.
constexpr uint64_t kMinElementsPerThread = uint64_t{1} << 18;

struct Run {
  const char* src;
  uint64_t elements;
  size_t out;  // index into the result
};

}  // namespace

absl::Status SliceAmax(kernels::DType dtype, const char* tensor, const SliceBytes& slice, bool per_segment,
                       kernels::NonFinitePolicy policy, std::vector<float>& amax) {
  const size_t element = kernels::DTypeSize(dtype);
  const uint64_t segment_elements = slice.segment_bytes / element;
  // Runs of elements: the segments, and a long single segment cut into pieces.
  std::vector<Run> runs;
  for (uint64_t s = 0; s < slice.segments; ++s) {
    const char* src = tensor + slice.first + s * slice.stride;
    const size_t out = per_segment ? s : 0;
    if (slice.segments == 1 && !per_segment) {
      for (uint64_t at = 0; at < segment_elements; at += kMinElementsPerThread) {
        runs.push_back({src + at * element, std::min(kMinElementsPerThread, segment_elements - at), out});
      }
    } else {
      runs.push_back({src, segment_elements, out});
    }
  }
  amax.assign(per_segment ? slice.segments : 1, 0.0f);
  const uint64_t total = slice.size() / element;
  const kernels::HostPass pass;
  const int threads = static_cast<int>(std::clamp<uint64_t>(total / kMinElementsPerThread, 1,
                                                           static_cast<uint64_t>(pass.threads())));
  std::atomic<size_t> next{0};
  std::mutex mu;
  absl::Status first_error;
  std::vector<float> partial(threads == 1 ? 0 : amax.size() * threads, 0.0f);
  auto work = [&](int thread) {
    float* out = threads == 1 ? amax.data() : partial.data() + static_cast<size_t>(thread) * amax.size();
    for (size_t i = next++; i < runs.size(); i = next++) {
      absl::StatusOr<float> m = kernels::AbsMaxFast(dtype, runs[i].src, runs[i].elements, policy);
      if (!m.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        if (first_error.ok()) first_error = m.status();
        return;
      }
      out[runs[i].out] = std::max(out[runs[i].out], *m);
    }
  };
  if (threads == 1) {
    work(0);
  } else {
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) pool.emplace_back(work, t);
    for (std::thread& t : pool) t.join();
    for (int t = 0; t < threads; ++t) {
      for (size_t i = 0; i < amax.size(); ++i) amax[i] = std::max(amax[i], partial[t * amax.size() + i]);
    }
  }
  return first_error;
}

void RunningAmax::CopyAppend(char* tensor, uint64_t offset, std::string_view piece) {
  const uint64_t element = kernels::DTypeSize(dtype_);
  const uint64_t end = offset + piece.size();
  if (offset != appended_) in_order_ = false;
  appended_ = end;
  if (!Tracked(dtype_) || !finite_ || !in_order_) {
    kernels::StreamCopy(tensor + offset, piece.data(), piece.size());
    return;
  }
  const auto take = [&](absl::StatusOr<float> m) {
    if (m.ok()) {
      max_ = std::max(max_, *m);
    } else {
      finite_ = false;
    }
  };
  const char* src = piece.data();
  uint64_t at = offset;
  if (at > scanned_) {  // the rest of an element the last piece began
    const uint64_t n = std::min(end, scanned_ + element) - at;
    std::memcpy(tensor + at, src, n);
    src += n;
    at += n;
    if (at == scanned_ + element) {
      take(kernels::AbsMaxFast(dtype_, tensor + scanned_, 1, kernels::NonFinitePolicy::kFail));
      scanned_ = at;
    }
  }
  const uint64_t whole = (end - at) / element;
  if (whole > 0) {
    // Non-temporal stores: the tensor is read again once whole, long after (stream_copy.h).
    take(kernels::StreamCopyAbsMaxFast(dtype_, tensor + at, src, whole, kernels::NonFinitePolicy::kFail));
    src += whole * element;
    at += whole * element;
    scanned_ = at;
  }
  if (at < end) std::memcpy(tensor + at, src, end - at);  // an element the next piece ends
}

std::optional<float> RunningAmax::amax() const {
  if (!Tracked(dtype_) || !finite_ || !in_order_) return std::nullopt;
  return max_;
}

}  // namespace weightd
