// CUDA kernel of the tiled FP8 quantization. Every thread converts groups of 8
// elements in a grid-stride loop. Where the range allows (aligned pointers, rows
// and tiles that are multiples of 8 wide), a group is one 16-byte load per 16
// bytes of input and one 8-byte store, and all 8 elements share one tile, so the
// tile and its reciprocal scale are found once per group; elsewhere a scalar path
// finds each element's tile. Tile arithmetic divides with a double-precision
// reciprocal corrected to the exact quotient (no 64-bit integer division).
//
// The arithmetic is the reference's: fp32 IEEE division for 1/scale (compiled
// without fast-math), a separately rounded multiply, round to nearest even. The
// hardware conversion (cvt.rn.satfinite.e4m3x2.f32, sm_89+) is used only for
// products within [-448, 448], where it is exact; anything else (a product just
// above 448, Inf, NaN) takes the reference's clamp-and-encode path.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/quantize_cuda.h"

namespace weightd::kernels::cuda {
namespace {

constexpr int kGroup = 8;
constexpr int kThreads = 256;

// x / d for x < 2^52: the double quotient is off by at most one, then corrected.
struct Divider {
  uint64_t d;
  double inverse;
  __device__ __forceinline__ uint64_t Divide(uint64_t x) const {
    uint64_t q = static_cast<uint64_t>(static_cast<double>(x) * inverse);
    if (q * d > x) {
      --q;
    } else if ((q + 1) * d <= x) {
      ++q;
    }
    return q;
  }
};

Divider MakeDivider(uint64_t d) { return Divider{d, 1.0 / static_cast<double>(d)}; }

struct TileGeometry {
  Divider cols, tile_rows, tile_cols;
  uint64_t grid_cols;
  uint64_t first_tile_row;  // tile row that scales[0] belongs to
};

// How tiles are found: one scale, one per row (per-channel), 128 x 128 blocks
// (shifts), or any other tiling (divisions).
enum class TileKind { kSingle, kRows, kBlock128, kGeneral };

TileKind KindOf(const Tiling& t) {
  if (t.num_tiles() == 1) return TileKind::kSingle;
  if (t.tile_rows == 1 && t.tile_cols == t.cols) return TileKind::kRows;
  if (t.tile_rows == 128 && t.tile_cols == 128) return TileKind::kBlock128;
  return TileKind::kGeneral;
}

// The reciprocal of the scale of the tile holding element `e`.
template <TileKind kKind>
__device__ __forceinline__ float InverseScale(const float* scales, const TileGeometry& g, uint64_t e) {
  const uint64_t row = g.cols.Divide(e);
  uint64_t tile;
  if constexpr (kKind == TileKind::kRows) {
    tile = row - g.first_tile_row;
  } else if constexpr (kKind == TileKind::kBlock128) {
    tile = ((row >> 7) - g.first_tile_row) * g.grid_cols + ((e - row * g.cols.d) >> 7);
  } else {
    tile = (g.tile_rows.Divide(row) - g.first_tile_row) * g.grid_cols + g.tile_cols.Divide(e - row * g.cols.d);
  }
  return __fdiv_rn(1.0f, scales[tile]);
}

template <DType kDType>
__device__ __forceinline__ float LoadElement(const void* src, uint64_t i) {
  if constexpr (kDType == DType::kBF16) {
    const uint16_t bits = static_cast<const uint16_t*>(src)[i];
    return __uint_as_float(static_cast<uint32_t>(bits) << 16);
  } else if constexpr (kDType == DType::kF16) {
    return __half2float(static_cast<const __half*>(src)[i]);
  } else if constexpr (kDType == DType::kF32) {
    return static_cast<const float*>(src)[i];
  } else {
    __nv_fp8_e4m3 q;
    q.__x = static_cast<const uint8_t*>(src)[i];
    return static_cast<float>(q);
  }
}

// Group `first` (a multiple of 8, 16-byte aligned in `src`) as 8 floats.
template <DType kDType>
__device__ __forceinline__ void LoadGroup(const void* src, uint64_t first, float (&x)[kGroup]) {
  if constexpr (kDType == DType::kBF16 || kDType == DType::kF16) {
    const uint4 raw = *reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(src) + first);
    const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      if constexpr (kDType == DType::kBF16) {
        x[2 * w] = __uint_as_float(words[w] << 16);
        x[2 * w + 1] = __uint_as_float(words[w] & 0xFFFF0000u);
      } else {
        __half2 h;
        *reinterpret_cast<uint32_t*>(&h) = words[w];
        const float2 f = __half22float2(h);
        x[2 * w] = f.x;
        x[2 * w + 1] = f.y;
      }
    }
  } else if constexpr (kDType == DType::kF32) {
    const float4* in = reinterpret_cast<const float4*>(static_cast<const float*>(src) + first);
    const float4 a = in[0], b = in[1];
    x[0] = a.x, x[1] = a.y, x[2] = a.z, x[3] = a.w, x[4] = b.x, x[5] = b.y, x[6] = b.z, x[7] = b.w;
  } else {
#pragma unroll
    for (int k = 0; k < kGroup; ++k) x[k] = LoadElement<kDType>(src, first + k);
  }
}

// The bit-exact software encoder (the same algorithm as fp8_e4m3.h) of a finite
// value already clamped to [-448, 448].
__device__ __forceinline__ uint8_t EncodeSoftware(float y) {
  const uint32_t bits = __float_as_uint(y);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  const uint32_t mag = bits & 0x7FFFFFFFu;
  if (mag >= 0x43E00000u) return sign | 0x7E;
  if (mag >= 0x3C800000u) {
    const uint32_t rounded = (mag + 0x7FFFFu + ((mag >> 20) & 1u)) >> 20;
    return sign | static_cast<uint8_t>(rounded - (120u << 3));
  }
  const uint32_t exponent = mag >> 23;
  const uint32_t shift = 141u - exponent;
  if (shift > 24) return sign;
  const uint32_t significand = (mag & 0x7FFFFFu) | 0x800000u;
  const uint32_t k = (significand + (1u << (shift - 1)) - 1u + ((significand >> shift) & 1u)) >> shift;
  return sign | static_cast<uint8_t>(k);
}

// The reference for one element, every case included: NaN -> +448, a product
// that is NaN (0 * Inf) keeps the zero's sign, clamp to +-448, encode.
__device__ __noinline__ uint8_t QuantizeReference(float x, float inv) {
  if (isnan(x)) return 0x7E;
  float y = __fmul_rn(x, inv);
  if (isnan(y)) return signbit(x) ? 0x80 : 0x00;
  return EncodeSoftware(fminf(fmaxf(y, -448.0f), 448.0f));
}

// Two products known to lie in [-448, 448]: low byte from `a`.
template <bool kHardware>
__device__ __forceinline__ uint16_t EncodePair(float a, float b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  if constexpr (kHardware) {
    return static_cast<uint16_t>(__nv_cvt_float2_to_fp8x2(make_float2(a, b), __NV_SATFINITE, __NV_E4M3));
  }
#endif
  return static_cast<uint16_t>(EncodeSoftware(a) | (EncodeSoftware(b) << 8));
}

// 8 elements sharing `inv`, as 8 bytes (element k in byte k).
template <bool kHardware>
__device__ __forceinline__ uint2 QuantizeGroup(const float (&x)[kGroup], float inv) {
  float y[kGroup];
  bool special = false;
#pragma unroll
  for (int k = 0; k < kGroup; ++k) {
    y[k] = __fmul_rn(x[k], inv);
    special |= !(fabsf(y[k]) <= 448.0f);  // true for NaN too
  }
  uint32_t words[2];
#pragma unroll
  for (int w = 0; w < 2; ++w) {
    words[w] = static_cast<uint32_t>(EncodePair<kHardware>(y[4 * w], y[4 * w + 1])) |
               (static_cast<uint32_t>(EncodePair<kHardware>(y[4 * w + 2], y[4 * w + 3])) << 16);
  }
  if (special) {
#pragma unroll
    for (int k = 0; k < kGroup; ++k) {
      if (!(fabsf(y[k]) <= 448.0f)) {
        const uint32_t shift = 8u * (k % 4);
        words[k / 4] = (words[k / 4] & ~(0xFFu << shift)) | (static_cast<uint32_t>(QuantizeReference(x[k], inv)) << shift);
      }
    }
  }
  return make_uint2(words[0], words[1]);
}

// One element through the same steps as QuantizeGroup.
template <bool kHardware>
__device__ __forceinline__ uint8_t QuantizeOne(float x, float inv) {
  const float y = __fmul_rn(x, inv);
  if (!(fabsf(y) <= 448.0f)) return QuantizeReference(x, inv);
  return static_cast<uint8_t>(EncodePair<kHardware>(y, 0.0f) & 0xFF);
}

// `vector`: src 16-byte aligned, dst 8-byte aligned, and every group of 8 starting
// at a multiple of 8 lies in one tile (one scale for the whole tensor, or rows
// and tile widths that are multiples of 8 with element_begin a multiple of 8).
template <DType kDType, bool kHardware, TileKind kKind>
__global__ void QuantizeKernel(const void* __restrict__ src, uint8_t* __restrict__ dst, const float* __restrict__ scales,
                               TileGeometry g, uint64_t element_begin, uint64_t count, bool vector) {
  constexpr bool kSingleScale = kKind == TileKind::kSingle;
  const float single_inv = kSingleScale ? __fdiv_rn(1.0f, scales[0]) : 0.0f;
  const uint64_t groups = (count + kGroup - 1) / kGroup;
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t group = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; group < groups;
       group += stride) {
    const uint64_t first = group * kGroup;
    if (vector && first + kGroup <= count) {
      float x[kGroup];
      LoadGroup<kDType>(src, first, x);
      const float inv = kSingleScale ? single_inv : InverseScale<kKind>(scales, g, element_begin + first);
      *reinterpret_cast<uint2*>(dst + first) = QuantizeGroup<kHardware>(x, inv);
      continue;
    }
    const int n = count - first < kGroup ? static_cast<int>(count - first) : kGroup;
    for (int k = 0; k < n; ++k) {
      const float inv = kSingleScale ? single_inv : InverseScale<kKind>(scales, g, element_begin + first + k);
      dst[first + k] = QuantizeOne<kHardware>(LoadElement<kDType>(src, first + k), inv);
    }
  }
}

template <DType kDType, bool kHardware, TileKind kKind>
void Enqueue(unsigned blocks, const void* src, uint8_t* dst, const float* scales, const TileGeometry& g, uint64_t begin,
             uint64_t count, bool vector, cudaStream_t stream) {
  QuantizeKernel<kDType, kHardware, kKind><<<blocks, kThreads, 0, stream>>>(src, dst, scales, g, begin, count, vector);
}

template <DType kDType, bool kHardware>
cudaError_t Launch(const void* src, uint8_t* dst, const float* scales, const TileGeometry& g, uint64_t begin,
                   uint64_t count, TileKind kind, bool vector, cudaStream_t stream) {
  const uint64_t groups = (count + kGroup - 1) / kGroup;
  int device = 0, sms = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  uint64_t blocks = (groups + kThreads - 1) / kThreads;
  const uint64_t max_blocks = static_cast<uint64_t>(sms > 0 ? sms : 1) * 32;
  if (blocks > max_blocks) blocks = max_blocks;
  if (blocks == 0) return cudaSuccess;
  const unsigned b = static_cast<unsigned>(blocks);
  switch (kind) {
    case TileKind::kSingle: Enqueue<kDType, kHardware, TileKind::kSingle>(b, src, dst, scales, g, begin, count, vector, stream); break;
    case TileKind::kRows: Enqueue<kDType, kHardware, TileKind::kRows>(b, src, dst, scales, g, begin, count, vector, stream); break;
    case TileKind::kBlock128: Enqueue<kDType, kHardware, TileKind::kBlock128>(b, src, dst, scales, g, begin, count, vector, stream); break;
    case TileKind::kGeneral: Enqueue<kDType, kHardware, TileKind::kGeneral>(b, src, dst, scales, g, begin, count, vector, stream); break;
  }
  return cudaGetLastError();
}

template <bool kHardware>
cudaError_t LaunchFor(DType dtype, const void* src, uint8_t* dst, const float* scales, const TileGeometry& g,
                      uint64_t begin, uint64_t count, TileKind kind, bool vector, cudaStream_t stream) {
  switch (dtype) {
    case DType::kBF16: return Launch<DType::kBF16, kHardware>(src, dst, scales, g, begin, count, kind, vector, stream);
    case DType::kF16: return Launch<DType::kF16, kHardware>(src, dst, scales, g, begin, count, kind, vector, stream);
    case DType::kF32: return Launch<DType::kF32, kHardware>(src, dst, scales, g, begin, count, kind, vector, stream);
    case DType::kF8E4M3:
      return Launch<DType::kF8E4M3, kHardware>(src, dst, scales, g, begin, count, kind, vector, stream);
    default: break;
  }
  return cudaErrorInvalidValue;
}

}  // namespace

int LaunchQuantize(DType dtype, const void* src, const Tiling& tiling, const float* scales, uint64_t element_begin,
                   uint64_t element_end, uint8_t* dst, void* stream, bool hardware_convert) {
  if (element_end <= element_begin) return cudaSuccess;
  if (tiling.cols == 0 || tiling.tile_rows == 0 || tiling.tile_cols == 0) return cudaErrorInvalidValue;
  TileGeometry g{MakeDivider(tiling.cols), MakeDivider(tiling.tile_rows), MakeDivider(tiling.tile_cols),
                 tiling.grid_cols(), (element_begin / tiling.cols) / tiling.tile_rows};
  const TileKind kind = KindOf(tiling);
  const bool groups_in_one_tile =
      kind == TileKind::kSingle || (tiling.cols % kGroup == 0 && tiling.tile_cols % kGroup == 0 && element_begin % kGroup == 0);
  const bool vector = groups_in_one_tile && reinterpret_cast<uintptr_t>(src) % 16 == 0 &&
                      reinterpret_cast<uintptr_t>(dst) % 8 == 0;
  const uint64_t count = element_end - element_begin;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  return hardware_convert ? LaunchFor<true>(dtype, src, dst, scales, g, element_begin, count, kind, vector, s)
                          : LaunchFor<false>(dtype, src, dst, scales, g, element_begin, count, kind, vector, s);
}

const char* ErrorName(int error) { return cudaGetErrorName(static_cast<cudaError_t>(error)); }

}  // namespace weightd::kernels::cuda
