#include "services/load/slice_amax.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <atomic>
#include <mutex>
#include <thread>

#include "kernels/float_convert.h"
#include "kernels/quantize_fast.h"

namespace weightd {
namespace {

// Non-negative IEEE values order as their bit patterns do, so the maximum
// magnitude is an integer maximum over the sign-cleared bits: exact, branch
// free, and vectorized by the compiler (this file is built with -O3).
struct Magnitudes {
  uint32_t max_finite = 0;
  bool nonfinite = false;  // some element is NaN or Inf
};

template <typename Bits>
Bits MaxMagnitude(const char* src, uint64_t n, Bits mask) {
  Bits max = 0;
  for (uint64_t i = 0; i < n; ++i) {
    Bits x;
    std::memcpy(&x, src + i * sizeof(Bits), sizeof(Bits));
    max = std::max(max, static_cast<Bits>(x & mask));
  }
  return max;
}

// One vectorized pass; a second, plain one only where a NaN or Inf is present.
template <typename Bits>
Magnitudes MaxFiniteMagnitude(const char* src, uint64_t n, Bits mask, Bits inf) {
  const Bits max = MaxMagnitude<Bits>(src, n, mask);
  if (max < inf) return {max, false};
  Bits finite = 0;
  for (uint64_t i = 0; i < n; ++i) {
    Bits x;
    std::memcpy(&x, src + i * sizeof(Bits), sizeof(Bits));
    const Bits m = x & mask;
    if (m < inf && m > finite) finite = m;
  }
  return {finite, true};
}

absl::StatusOr<float> AbsMax(kernels::DType dtype, const char* src, uint64_t n, kernels::NonFinitePolicy policy) {
  Magnitudes m;
  switch (dtype) {
    case kernels::DType::kBF16: m = MaxFiniteMagnitude<uint16_t>(src, n, 0x7FFF, 0x7F80); break;
    case kernels::DType::kF16: m = MaxFiniteMagnitude<uint16_t>(src, n, 0x7FFF, 0x7C00); break;
    case kernels::DType::kF32: m = MaxFiniteMagnitude<uint32_t>(src, n, 0x7FFFFFFF, 0x7F800000); break;
    default: return kernels::AbsMax(dtype, src, n, policy);
  }
  if (m.nonfinite && policy == kernels::NonFinitePolicy::kFail) {
    return absl::InvalidArgumentError("non-finite value");
  }
  switch (dtype) {
    case kernels::DType::kBF16: return std::bit_cast<float>(m.max_finite << 16);
    case kernels::DType::kF16: return kernels::FloatFromHalfBits(static_cast<uint16_t>(m.max_finite));
    default: return std::bit_cast<float>(m.max_finite);
  }
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
      absl::StatusOr<float> m = AbsMax(dtype, runs[i].src, runs[i].elements, policy);
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

void RunningAmax::Scan(const char* tensor, uint64_t bytes) {
  const uint64_t element = kernels::DTypeSize(dtype_);
  const uint64_t whole = bytes / element * element;
  if (whole <= scanned_) return;
  const char* from = tensor + scanned_;
  const uint64_t n = (whole - scanned_) / element;
  switch (dtype_) {
    case kernels::DType::kBF16:
    case kernels::DType::kF16:
      max_bits_ = std::max<uint32_t>(max_bits_, MaxMagnitude<uint16_t>(from, n, 0x7FFF));
      break;
    case kernels::DType::kF32:
      max_bits_ = std::max(max_bits_, MaxMagnitude<uint32_t>(from, n, 0x7FFFFFFF));
      break;
    default:
      break;
  }
  scanned_ = whole;
}

std::optional<float> RunningAmax::amax() const {
  switch (dtype_) {
    case kernels::DType::kBF16:
      if (max_bits_ >= 0x7F80) return std::nullopt;
      return std::bit_cast<float>(max_bits_ << 16);
    case kernels::DType::kF16:
      if (max_bits_ >= 0x7C00) return std::nullopt;
      return kernels::FloatFromHalfBits(static_cast<uint16_t>(max_bits_));
    case kernels::DType::kF32:
      if (max_bits_ >= 0x7F800000) return std::nullopt;
      return std::bit_cast<float>(max_bits_);
    default:
      return std::nullopt;
  }
}

}  // namespace weightd
