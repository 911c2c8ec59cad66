#include "kernels/stream_copy.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define WEIGHTD_STREAM_AVX2 1
#endif

namespace weightd::kernels {
namespace {

// What a copy keeps of its elements: nothing, or the largest 16- or 32-bit
// element with its sign bit cleared.
enum class Keep { kNothing, kMax16, kMax32 };

template <Keep K>
uint32_t CopyScalar(uint8_t* __restrict dst, const uint8_t* __restrict src, size_t bytes) {
  if constexpr (K == Keep::kNothing) {
    if (bytes > 0) std::memcpy(dst, src, bytes);
    return 0;
  } else {
    using Bits = std::conditional_t<K == Keep::kMax16, uint16_t, uint32_t>;
    constexpr Bits kMask = std::numeric_limits<Bits>::max() >> 1;  // the sign bit cleared
    Bits max = 0;
    for (size_t i = 0; i < bytes; i += sizeof(Bits)) {
      Bits x;
      std::memcpy(&x, src + i, sizeof(Bits));
      std::memcpy(dst + i, &x, sizeof(Bits));
      max = std::max(max, static_cast<Bits>(x & kMask));
    }
    return max;
  }
}

#ifdef WEIGHTD_STREAM_AVX2
bool HasAvx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}

template <Keep K>
__attribute__((target("avx2"))) inline __m256i Fold(__m256i max, __m256i v, __m256i mask) {
  if constexpr (K == Keep::kMax16) return _mm256_max_epi16(max, _mm256_and_si256(v, mask));  // masked: >= 0
  if constexpr (K == Keep::kMax32) return _mm256_max_epi32(max, _mm256_and_si256(v, mask));
  return max;
}

template <Keep K>
__attribute__((target("avx2"))) uint32_t CopyStreaming(uint8_t* dst, const uint8_t* src, size_t bytes) {
  // Up to the first 32-byte boundary of dst with ordinary stores (a whole number of
  // elements: Copy sends only a dst aligned to the element size here).
  const size_t head = std::min(bytes, (32 - reinterpret_cast<uintptr_t>(dst) % 32) % 32);
  uint32_t max = CopyScalar<K>(dst, src, head);
  dst += head;
  src += head;
  bytes -= head;
  const __m256i mask = K == Keep::kMax16 ? _mm256_set1_epi16(0x7FFF) : _mm256_set1_epi32(0x7FFFFFFF);
  __m256i m0 = _mm256_setzero_si256(), m1 = m0;
  size_t i = 0;
  for (; i + 128 <= bytes; i += 128) {
    const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 32));
    const __m256i v2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 64));
    const __m256i v3 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 96));
    _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + i), v0);
    _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + i + 32), v1);
    _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + i + 64), v2);
    _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + i + 96), v3);
    m0 = Fold<K>(Fold<K>(m0, v0, mask), v2, mask);
    m1 = Fold<K>(Fold<K>(m1, v1, mask), v3, mask);
  }
  for (; i + 32 <= bytes; i += 32) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + i), v);
    m0 = Fold<K>(m0, v, mask);
  }
  _mm_sfence();  // the streaming stores are weakly ordered: visible before we return
  max = std::max(max, CopyScalar<K>(dst + i, src + i, bytes - i));
  if constexpr (K != Keep::kNothing) {
    alignas(32) uint32_t lanes[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), Fold<K>(m0, m1, mask));
    for (uint32_t lane : lanes) {
      max = std::max(max, K == Keep::kMax16 ? std::max(lane & 0xFFFF, lane >> 16) : lane);
    }
  }
  return max;
}
#endif

template <Keep K>
uint32_t Copy(void* dst, const void* src, size_t bytes) {
  auto* d = static_cast<uint8_t*>(dst);
  const auto* s = static_cast<const uint8_t*>(src);
#ifdef WEIGHTD_STREAM_AVX2
  constexpr uintptr_t kElement = K == Keep::kMax16 ? 2 : K == Keep::kMax32 ? 4 : 1;
  if (HasAvx2() && reinterpret_cast<uintptr_t>(d) % kElement == 0) return CopyStreaming<K>(d, s, bytes);
#endif
  return CopyScalar<K>(d, s, bytes);
}

}  // namespace

void StreamCopy(void* dst, const void* src, size_t bytes) { Copy<Keep::kNothing>(dst, src, bytes); }

uint16_t StreamCopyMax16(void* dst, const void* src, size_t n) {
  return static_cast<uint16_t>(Copy<Keep::kMax16>(dst, src, n * 2));
}

uint32_t StreamCopyMax32(void* dst, const void* src, size_t n) { return Copy<Keep::kMax32>(dst, src, n * 4); }

}  // namespace weightd::kernels
