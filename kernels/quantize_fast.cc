// Fast CPU kernels: one row at a time through loops of fast_codec.h that the
// compiler vectorizes, compiled twice (AVX2 and the baseline) and picked at load
// time by the CPU; rows spread over worker threads.
#include "kernels/quantize_fast.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/fast_codec.h"
#include "kernels/float_convert.h"
#include "kernels/fp8_e4m3.h"
#include "kernels/stream_copy.h"

namespace weightd::kernels {
namespace {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define WEIGHTD_CPU_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define WEIGHTD_CPU_CLONES
#endif

constexpr uint32_t kMagnitudeMask = 0x7FFFFFFFu;
constexpr uint32_t kInfBits = 0x7F800000u;
// Below this many elements per thread, starting a thread costs more than it saves.
constexpr size_t kMinElementsPerThread = size_t{1} << 18;

constexpr std::array<uint32_t, 256> kE4M3Bits = [] {
  std::array<uint32_t, 256> bits{};
  for (int q = 0; q < 256; ++q) bits[q] = std::bit_cast<uint32_t>(fp8::FloatFromE4M3(static_cast<uint8_t>(q)));
  return bits;
}();

inline uint32_t E4M3Bits(const uint8_t* src, size_t i) { return kE4M3Bits[src[i]]; }

using BitsLoader = uint32_t (*)(const uint8_t*, size_t);

// Masked maximum of |x| per tile segment of one row (non-finite values left out);
// returns whether the row holds a non-finite value.
template <BitsLoader Load>
inline bool RowMaxT(const uint8_t* __restrict src, size_t cols, size_t tile_cols, uint32_t* __restrict seg_max) {
  uint32_t any_bad = 0;
  for (size_t c0 = 0, g = 0; c0 < cols; c0 += tile_cols, ++g) {
    const size_t end = std::min(cols, c0 + tile_cols);
    int32_t m = 0;
    uint32_t bad = 0;
    for (size_t c = c0; c < end; ++c) {
      const uint32_t mag = Load(src, c) & kMagnitudeMask;
      const uint32_t non_finite = fast::AtLeastMask(mag, kInfBits);
      bad |= non_finite;
      const int32_t v = static_cast<int32_t>(mag & ~non_finite);
      m = v > m ? v : m;
    }
    seg_max[g] = static_cast<uint32_t>(m);
    any_bad |= bad;
  }
  return any_bad != 0;
}

template <BitsLoader Load>
inline void EncodeRowT(const uint8_t* __restrict src, size_t cols, size_t tile_cols, const float* inv,
                       uint8_t* __restrict dst) {
  for (size_t c0 = 0, g = 0; c0 < cols; c0 += tile_cols, ++g) {
    const size_t end = std::min(cols, c0 + tile_cols);
    const float tile_inv = inv[g];
    for (size_t c = c0; c < end; ++c) dst[c] = fast::EncodeScaled(Load(src, c), tile_inv);
  }
}

WEIGHTD_CPU_CLONES bool RowMaxBf16(const uint8_t* s, size_t n, size_t t, uint32_t* m) { return RowMaxT<fast::Bf16Bits>(s, n, t, m); }
WEIGHTD_CPU_CLONES bool RowMaxF16(const uint8_t* s, size_t n, size_t t, uint32_t* m) { return RowMaxT<fast::HalfBits>(s, n, t, m); }
WEIGHTD_CPU_CLONES bool RowMaxF32(const uint8_t* s, size_t n, size_t t, uint32_t* m) { return RowMaxT<fast::F32Bits>(s, n, t, m); }
bool RowMaxE4M3(const uint8_t* s, size_t n, size_t t, uint32_t* m) { return RowMaxT<E4M3Bits>(s, n, t, m); }

WEIGHTD_CPU_CLONES void EncodeRowBf16(const uint8_t* s, size_t n, size_t t, const float* inv, uint8_t* d) { EncodeRowT<fast::Bf16Bits>(s, n, t, inv, d); }
WEIGHTD_CPU_CLONES void EncodeRowF16(const uint8_t* s, size_t n, size_t t, const float* inv, uint8_t* d) { EncodeRowT<fast::HalfBits>(s, n, t, inv, d); }
WEIGHTD_CPU_CLONES void EncodeRowF32(const uint8_t* s, size_t n, size_t t, const float* inv, uint8_t* d) { EncodeRowT<fast::F32Bits>(s, n, t, inv, d); }
void EncodeRowE4M3(const uint8_t* s, size_t n, size_t t, const float* inv, uint8_t* d) { EncodeRowT<E4M3Bits>(s, n, t, inv, d); }

// The largest sign-cleared 16-bit pattern of each segment, vectorized 16 lanes wide
// (they order as the magnitudes do, NaN and Inf above every finite value).
WEIGHTD_CPU_CLONES void RowMax16(const uint8_t* __restrict src, size_t cols, size_t tile_cols,
                                 uint32_t* __restrict seg_max) {
  for (size_t c0 = 0, g = 0; c0 < cols; c0 += tile_cols, ++g) {
    const size_t end = std::min(cols, c0 + tile_cols);
    uint16_t m = 0;
    for (size_t c = c0; c < end; ++c) {
      uint16_t x;
      std::memcpy(&x, src + 2 * c, 2);
      x &= 0x7FFF;
      m = x > m ? x : m;
    }
    seg_max[g] = m;
  }
}

// BF16 and F16: the 16-bit maxima, as float bit patterns; the masked pass of RowMaxT
// only for a row holding a NaN or Inf.
bool RowMaxHalfWidth(DType dtype, const uint8_t* src, size_t cols, size_t tile_cols, uint32_t* seg_max) {
  const uint32_t inf = dtype == DType::kBF16 ? 0x7F80 : 0x7C00;
  RowMax16(src, cols, tile_cols, seg_max);
  const size_t segments = (cols + tile_cols - 1) / tile_cols;
  for (size_t g = 0; g < segments; ++g) {
    if (seg_max[g] >= inf) {
      return dtype == DType::kBF16 ? RowMaxBf16(src, cols, tile_cols, seg_max)
                                   : RowMaxF16(src, cols, tile_cols, seg_max);
    }
  }
  for (size_t g = 0; g < segments; ++g) {
    seg_max[g] = dtype == DType::kBF16 ? seg_max[g] << 16
                                       : std::bit_cast<uint32_t>(FloatFromHalfBits(static_cast<uint16_t>(seg_max[g])));
  }
  return false;
}

bool RowMax(DType dtype, const uint8_t* src, size_t cols, size_t tile_cols, uint32_t* seg_max) {
  switch (dtype) {
    case DType::kBF16:
    case DType::kF16: return RowMaxHalfWidth(dtype, src, cols, tile_cols, seg_max);
    case DType::kF32: return RowMaxF32(src, cols, tile_cols, seg_max);
    case DType::kF8E4M3: return RowMaxE4M3(src, cols, tile_cols, seg_max);
    default: break;  // not quantizable: read as zeros, like the reference
  }
  std::fill(seg_max, seg_max + (cols + tile_cols - 1) / tile_cols, 0u);
  return false;
}

void EncodeRow(DType dtype, const uint8_t* src, size_t cols, size_t tile_cols, const float* inv, uint8_t* dst) {
  switch (dtype) {
    case DType::kBF16: return EncodeRowBf16(src, cols, tile_cols, inv, dst);
    case DType::kF16: return EncodeRowF16(src, cols, tile_cols, inv, dst);
    case DType::kF32: return EncodeRowF32(src, cols, tile_cols, inv, dst);
    case DType::kF8E4M3: return EncodeRowE4M3(src, cols, tile_cols, inv, dst);
    default: break;
  }
  // Outside the enum the reference reads zeros, which encode as +0.
  std::fill(dst, dst + cols, uint8_t{0});
}

size_t PartsFor(size_t rows, size_t cols, int threads) {
  const size_t wanted = static_cast<size_t>(threads);
  const size_t by_work = std::max<size_t>(1, rows * cols / kMinElementsPerThread);
  return std::max<size_t>(1, std::min({wanted, by_work, rows}));
}

// fn(part, begin, end) over `parts` contiguous row ranges of [0, rows), part 0 on
// the calling thread. A thread that cannot be started runs its range inline.
template <typename Fn>
void ForRowRanges(size_t rows, size_t parts, Fn&& fn) {
  if (parts <= 1) {
    fn(size_t{0}, size_t{0}, rows);
    return;
  }
  const size_t chunk = (rows + parts - 1) / parts;
  std::vector<std::thread> workers;
  for (size_t p = 1; p < parts && p * chunk < rows; ++p) {
    const size_t begin = p * chunk, end = std::min(rows, begin + chunk);
    try {
      workers.emplace_back([&fn, p, begin, end] { fn(p, begin, end); });
    } catch (const std::system_error&) {
      fn(p, begin, end);
    }
  }
  fn(size_t{0}, size_t{0}, std::min(rows, chunk));
  for (std::thread& w : workers) w.join();
}

std::atomic<int> default_threads{0};  // set by SetDefaultQuantizeThreads; 0: share the cores
std::atomic<int> passes_in_flight{0};  // HostPass objects alive

int Cores() {
  static const int cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  return cores;
}

thread_local int declared_callers = 1;  // ConcurrentCallers of this thread

int ThreadsFor(int passes) {
  const int set = default_threads.load(std::memory_order_relaxed);
  return set > 0 ? set : std::max(1, Cores() / std::max({1, passes, declared_callers}));
}

}  // namespace

int DefaultQuantizeThreads() { return ThreadsFor(passes_in_flight.load(std::memory_order_relaxed)); }

ConcurrentCallers::ConcurrentCallers(int callers) : previous_(std::exchange(declared_callers, std::max(1, callers))) {}

ConcurrentCallers::~ConcurrentCallers() { declared_callers = previous_; }

HostPass::HostPass() : threads_(ThreadsFor(passes_in_flight.fetch_add(1, std::memory_order_relaxed) + 1)) {}

HostPass::~HostPass() { passes_in_flight.fetch_sub(1, std::memory_order_relaxed); }

void SetDefaultQuantizeThreads(int threads) { default_threads.store(std::max(0, threads), std::memory_order_relaxed); }

namespace {

// The largest sign-cleared bit pattern among n elements of `Bits` (vectorized).
template <typename Bits>
Bits MaxMagnitude(const uint8_t* src, size_t n, Bits mask) {
  Bits max = 0;
  for (size_t i = 0; i < n; ++i) {
    Bits x;
    std::memcpy(&x, src + i * sizeof(Bits), sizeof(Bits));
    max = std::max(max, static_cast<Bits>(x & mask));
  }
  return max;
}

// The largest finite magnitude, and whether some element is NaN or Inf: one
// vectorized pass, a second, plain one only where a NaN or Inf is present.
template <typename Bits>
std::pair<Bits, bool> MaxFiniteMagnitude(const uint8_t* src, size_t n, Bits mask, Bits inf) {
  const Bits max = MaxMagnitude<Bits>(src, n, mask);
  if (max < inf) return {max, false};
  Bits finite = 0;
  for (size_t i = 0; i < n; ++i) {
    Bits x;
    std::memcpy(&x, src + i * sizeof(Bits), sizeof(Bits));
    const Bits m = x & mask;
    if (m < inf && m > finite) finite = m;
  }
  return {finite, true};
}

// As MaxMagnitude, copying the elements to `dst` on the way.
template <typename Bits>
Bits CopyMaxMagnitude(uint8_t* __restrict dst, const uint8_t* __restrict src, size_t n, Bits mask) {
  Bits max = 0;
  for (size_t i = 0; i < n; ++i) {
    Bits x;
    std::memcpy(&x, src + i * sizeof(Bits), sizeof(Bits));
    std::memcpy(dst + i * sizeof(Bits), &x, sizeof(Bits));
    max = std::max(max, static_cast<Bits>(x & mask));
  }
  return max;
}

WEIGHTD_CPU_CLONES uint16_t CopyMax16(uint8_t* d, const uint8_t* s, size_t n) { return CopyMaxMagnitude<uint16_t>(d, s, n, 0x7FFF); }
WEIGHTD_CPU_CLONES uint32_t CopyMax32(uint8_t* d, const uint8_t* s, size_t n) {
  return CopyMaxMagnitude<uint32_t>(d, s, n, kMagnitudeMask);
}

// Copies one row of `cols` elements and folds the largest sign-cleared pattern of
// each tile_cols-wide segment into tile_max[segment].
template <typename Bits>
inline void CopyRowTileMax(uint8_t* __restrict dst, const uint8_t* __restrict src, size_t cols, size_t tile_cols,
                           Bits mask, uint32_t* __restrict tile_max) {
  for (size_t c0 = 0, g = 0; c0 < cols; c0 += tile_cols, ++g) {
    const size_t n = std::min(cols - c0, tile_cols);
    const uint32_t m = CopyMaxMagnitude<Bits>(dst + c0 * sizeof(Bits), src + c0 * sizeof(Bits), n, mask);
    tile_max[g] = std::max(tile_max[g], m);
  }
}

WEIGHTD_CPU_CLONES void CopyRowTileMax16(uint8_t* d, const uint8_t* s, size_t cols, size_t tile_cols, uint32_t* m) {
  CopyRowTileMax<uint16_t>(d, s, cols, tile_cols, 0x7FFF, m);
}
WEIGHTD_CPU_CLONES void CopyRowTileMax32(uint8_t* d, const uint8_t* s, size_t cols, size_t tile_cols, uint32_t* m) {
  CopyRowTileMax<uint32_t>(d, s, cols, tile_cols, kMagnitudeMask, m);
}

WEIGHTD_CPU_CLONES std::pair<uint16_t, bool> MaxFinite16(const uint8_t* s, size_t n, uint16_t inf) {
  return MaxFiniteMagnitude<uint16_t>(s, n, 0x7FFF, inf);
}
WEIGHTD_CPU_CLONES std::pair<uint32_t, bool> MaxFinite32(const uint8_t* s, size_t n) {
  return MaxFiniteMagnitude<uint32_t>(s, n, kMagnitudeMask, kInfBits);
}

// The sign-cleared bit pattern of +Inf in `dtype` (BF16, F16, F32): finite magnitudes lie below it.
uint32_t InfBits(DType dtype) { return dtype == DType::kBF16 ? 0x7F80 : dtype == DType::kF16 ? 0x7C00 : kInfBits; }

// The value of a finite sign-cleared bit pattern of `dtype` (BF16, F16, F32).
float MagnitudeValue(DType dtype, uint32_t bits) {
  switch (dtype) {
    case DType::kBF16: return std::bit_cast<float>(bits << 16);
    case DType::kF16: return FloatFromHalfBits(static_cast<uint16_t>(bits));
    default: return std::bit_cast<float>(bits);
  }
}

}  // namespace

absl::StatusOr<float> AbsMaxFast(DType dtype, const void* src, size_t n, NonFinitePolicy policy) {
  const uint8_t* bytes = static_cast<const uint8_t*>(src);
  std::pair<uint32_t, bool> m;
  switch (dtype) {
    case DType::kBF16:
    case DType::kF16: m = MaxFinite16(bytes, n, static_cast<uint16_t>(InfBits(dtype))); break;
    case DType::kF32: m = MaxFinite32(bytes, n); break;
    default: return AbsMax(dtype, src, n, policy);
  }
  if (m.second && policy == NonFinitePolicy::kFail) {
    return absl::InvalidArgumentError(absl::StrCat("non-finite value at element ", FindNonFinite(dtype, src, n)));
  }
  return MagnitudeValue(dtype, m.first);
}

namespace {

// Copies n elements of `src` to `dst` and returns their AbsMaxFast: BF16 and F16
// through `copy_max16`, F32 through `copy_max32` (each returns the largest
// sign-cleared bit pattern it copied); other dtypes through `copy_bytes`, then read.
template <class CopyMax16Fn, class CopyMax32Fn, class CopyBytesFn>
absl::StatusOr<float> CopyAbsMaxWith(DType dtype, void* dst, const void* src, size_t n, NonFinitePolicy policy,
                                     CopyMax16Fn copy_max16, CopyMax32Fn copy_max32, CopyBytesFn copy_bytes) {
  uint32_t max = 0;
  switch (dtype) {
    case DType::kBF16:
    case DType::kF16: max = copy_max16(); break;
    case DType::kF32: max = copy_max32(); break;
    default:
      if (n > 0) copy_bytes(n * DTypeSize(dtype));
      return AbsMax(dtype, dst, n, policy);
  }
  // A NaN or Inf among them: the finite maximum (or the error) from the copy.
  if (max >= InfBits(dtype)) return AbsMaxFast(dtype, dst, n, policy);
  return MagnitudeValue(dtype, max);
}

}  // namespace

absl::StatusOr<float> CopyAbsMaxFast(DType dtype, void* dst, const void* src, size_t n, NonFinitePolicy policy) {
  uint8_t* out = static_cast<uint8_t*>(dst);
  const uint8_t* in = static_cast<const uint8_t*>(src);
  return CopyAbsMaxWith(
      dtype, dst, src, n, policy, [&] { return CopyMax16(out, in, n); }, [&] { return CopyMax32(out, in, n); },
      [&](size_t bytes) { std::memcpy(dst, src, bytes); });
}

absl::StatusOr<float> StreamCopyAbsMaxFast(DType dtype, void* dst, const void* src, size_t n, NonFinitePolicy policy) {
  return CopyAbsMaxWith(
      dtype, dst, src, n, policy, [&] { return StreamCopyMax16(dst, src, n); },
      [&] { return StreamCopyMax32(dst, src, n); }, [&](size_t bytes) { StreamCopy(dst, src, bytes); });
}

absl::Status CopyTileScalesFast(Scheme scheme, DType dtype, void* dst, const void* src, const Tiling& tiling,
                                NonFinitePolicy policy, float* scales) {
  const size_t rows = tiling.rows, cols = tiling.cols, grid_cols = tiling.grid_cols();
  const size_t row_bytes = cols * DTypeSize(dtype);
  uint8_t* out = static_cast<uint8_t*>(dst);
  const uint8_t* in = static_cast<const uint8_t*>(src);
  const bool wide = dtype == DType::kF32;
  if ((dtype != DType::kBF16 && dtype != DType::kF16 && !wide) || rows == 0 || cols == 0) {
    if (rows * row_bytes > 0) std::memcpy(dst, src, rows * row_bytes);
    return TileScalesFast(scheme, dtype, dst, tiling, policy, scales, 1);
  }
  // Sign-cleared bit patterns order as the magnitudes do (NaN and Inf above every
  // finite value), so the maxima of the patterns are the tiles' amax.
  std::vector<uint32_t> tile_max(tiling.num_tiles(), 0);
  for (size_t r = 0; r < rows; ++r) {
    uint32_t* tile_row = tile_max.data() + (r / tiling.tile_rows) * grid_cols;
    if (wide) {
      CopyRowTileMax32(out + r * row_bytes, in + r * row_bytes, cols, tiling.tile_cols, tile_row);
    } else {
      CopyRowTileMax16(out + r * row_bytes, in + r * row_bytes, cols, tiling.tile_cols, tile_row);
    }
  }
  const uint32_t inf = InfBits(dtype);
  for (uint32_t m : tile_max) {
    // A NaN or Inf: the finite maxima (or the error naming it) from the copy.
    if (m >= inf) return TileScalesFast(scheme, dtype, dst, tiling, policy, scales, 1);
  }
  for (size_t t = 0; t < tile_max.size(); ++t) {
    const float amax = MagnitudeValue(dtype, tile_max[t]);
    scales[t] = scheme == Scheme::kBlock ? BlockScaleFromAmax(amax) : ScaleFromAmax(amax);
  }
  return absl::OkStatus();
}

size_t FindNonFinite(DType dtype, const void* src, size_t n) {
  const uint8_t* bytes = static_cast<const uint8_t*>(src);
  for (size_t i = 0; i < n; ++i) {
    uint32_t bits = 0;
    switch (dtype) {
      case DType::kBF16: bits = fast::Bf16Bits(bytes, i); break;
      case DType::kF16: bits = fast::HalfBits(bytes, i); break;
      case DType::kF32: bits = fast::F32Bits(bytes, i); break;
      case DType::kF8E4M3: bits = E4M3Bits(bytes, i); break;
      default: return n;
    }
    if ((bits & kMagnitudeMask) >= kInfBits) return i;
  }
  return n;
}

absl::Status TileScalesFast(Scheme scheme, DType dtype, const void* src, const Tiling& tiling,
                            NonFinitePolicy policy, float* scales, int threads) {
  const size_t rows = tiling.rows, cols = tiling.cols, grid_cols = tiling.grid_cols();
  const size_t row_bytes = cols * DTypeSize(dtype);
  const uint8_t* bytes = static_cast<const uint8_t*>(src);
  std::vector<uint32_t> max_magnitude(tiling.num_tiles(), 0);

  // Each part gathers the maxima of the tile rows its rows touch; a tile shared
  // by two parts (per-tensor, a 128-row block) is merged after the join.
  struct Part {
    size_t first_tile_row = 0;
    std::vector<uint32_t> tiles;
    size_t first_bad = std::numeric_limits<size_t>::max();
  };
  const HostPass pass;
  const size_t parts = rows == 0 || cols == 0 ? 0 : PartsFor(rows, cols, threads > 0 ? threads : pass.threads());
  std::vector<Part> results(parts);
  if (parts > 0) {
    ForRowRanges(rows, parts, [&](size_t p, size_t begin, size_t end) {
      Part& part = results[p];
      part.first_tile_row = begin / tiling.tile_rows;
      part.tiles.assign(((end - 1) / tiling.tile_rows - part.first_tile_row + 1) * grid_cols, 0);
      std::vector<uint32_t> seg(grid_cols);
      for (size_t r = begin; r < end; ++r) {
        const uint8_t* row = bytes + r * row_bytes;
        if (RowMax(dtype, row, cols, tiling.tile_cols, seg.data()) && policy == NonFinitePolicy::kFail) {
          part.first_bad = r * cols + FindNonFinite(dtype, row, cols);
          return;
        }
        uint32_t* tile_row = part.tiles.data() + (r / tiling.tile_rows - part.first_tile_row) * grid_cols;
        for (size_t g = 0; g < grid_cols; ++g) tile_row[g] = std::max(tile_row[g], seg[g]);
      }
    });
  }
  size_t first_bad = std::numeric_limits<size_t>::max();
  for (const Part& part : results) first_bad = std::min(first_bad, part.first_bad);
  if (first_bad != std::numeric_limits<size_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat("non-finite value at element ", first_bad));
  }
  for (const Part& part : results) {
    uint32_t* out = max_magnitude.data() + part.first_tile_row * grid_cols;
    for (size_t t = 0; t < part.tiles.size(); ++t) out[t] = std::max(out[t], part.tiles[t]);
  }
  for (size_t t = 0; t < max_magnitude.size(); ++t) {
    const float amax = std::bit_cast<float>(max_magnitude[t]);
    scales[t] = scheme == Scheme::kBlock ? BlockScaleFromAmax(amax) : ScaleFromAmax(amax);
  }
  return absl::OkStatus();
}

void QuantizeRowsFast(DType dtype, const void* src, const Tiling& tiling, const float* scales, size_t row_begin,
                      size_t row_end, uint8_t* dst, int threads) {
  if (row_end <= row_begin || tiling.cols == 0) return;
  const size_t rows = row_end - row_begin, cols = tiling.cols, grid_cols = tiling.grid_cols();
  const size_t row_bytes = cols * DTypeSize(dtype);
  const uint8_t* bytes = static_cast<const uint8_t*>(src);
  const HostPass pass;
  ForRowRanges(rows, PartsFor(rows, cols, threads > 0 ? threads : pass.threads()), [&](size_t, size_t begin, size_t end) {
    std::vector<float> inv(grid_cols);
    size_t cached_tile_row = std::numeric_limits<size_t>::max();
    for (size_t r = begin; r < end; ++r) {
      const size_t tile_row = (row_begin + r) / tiling.tile_rows;
      if (tile_row != cached_tile_row) {
        for (size_t g = 0; g < grid_cols; ++g) inv[g] = 1.0f / scales[tile_row * grid_cols + g];
        cached_tile_row = tile_row;
      }
      EncodeRow(dtype, bytes + r * row_bytes, cols, tiling.tile_cols, inv.data(), dst + r * cols);
    }
  });
}

}  // namespace weightd::kernels
