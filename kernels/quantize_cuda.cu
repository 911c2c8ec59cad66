// CUDA kernel of the tiled FP8 quantization. Every thread converts 16 elements:
// 16-byte vector loads and one 16-byte store where the range is aligned, a scalar
// path elsewhere; grid-stride loop. The arithmetic is the reference's: fp32 IEEE
// division for 1/scale (compiled without fast-math), a separately rounded
// multiply, clamp to +-448, round to nearest even.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/quantize_cuda.h"

namespace weightd::kernels::cuda {
namespace {

constexpr int kElementsPerThread = 16;
constexpr int kThreads = 256;

struct TileGeometry {
  uint64_t cols;
  uint64_t tile_rows, tile_cols;
  uint64_t grid_cols;
  uint64_t first_tile_row;  // tile row that scales[0] belongs to
};

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

// The bit-exact software encoder (the same algorithm as fp8_e4m3.h), for checking
// the hardware conversion and for devices without it.
__device__ __forceinline__ uint8_t EncodeSoftware(float y) {
  const uint32_t bits = __float_as_uint(y);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  const uint32_t mag = bits & 0x7FFFFFFFu;
  if (mag > 0x7F800000u) return 0x7F;
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

template <bool kHardware>
__device__ __forceinline__ uint8_t QuantizeOne(float x, float inv) {
  if (isnan(x)) return 0x7E;
  float y = __fmul_rn(x, inv);
  if (isnan(y)) return signbit(x) ? 0x80 : 0x00;  // 0 * Inf: keep the zero
  y = fminf(fmaxf(y, -448.0f), 448.0f);
  if constexpr (kHardware) {
    return static_cast<uint8_t>(__nv_cvt_float_to_fp8(y, __NV_SATFINITE, __NV_E4M3));
  } else {
    return EncodeSoftware(y);
  }
}

// The scale's reciprocal of the tile holding element (row, col).
__device__ __forceinline__ float InverseScale(const float* scales, const TileGeometry& g, uint64_t row, uint64_t col) {
  const uint64_t tile = (row / g.tile_rows - g.first_tile_row) * g.grid_cols + col / g.tile_cols;
  return __fdiv_rn(1.0f, scales[tile]);
}

template <DType kDType, bool kHardware, bool kSingleScale>
__global__ void QuantizeKernel(const void* __restrict__ src, uint8_t* __restrict__ dst, const float* __restrict__ scales,
                               TileGeometry g, uint64_t element_begin, uint64_t count, bool aligned) {
  const float single_inv = kSingleScale ? __fdiv_rn(1.0f, scales[0]) : 0.0f;
  const uint64_t groups = (count + kElementsPerThread - 1) / kElementsPerThread;
  for (uint64_t group = blockIdx.x * static_cast<uint64_t>(blockDim.x) + threadIdx.x; group < groups;
       group += static_cast<uint64_t>(gridDim.x) * blockDim.x) {
    const uint64_t first = group * kElementsPerThread;
    const int n = count - first < kElementsPerThread ? static_cast<int>(count - first) : kElementsPerThread;
    float x[kElementsPerThread];
    if (aligned && n == kElementsPerThread) {
      constexpr int kBytes = kElementsPerThread * static_cast<int>(DTypeSize(kDType));
      const uint4* in = reinterpret_cast<const uint4*>(static_cast<const char*>(src) + first * DTypeSize(kDType));
      uint4 raw[kBytes / 16];
#pragma unroll
      for (int v = 0; v < kBytes / 16; ++v) raw[v] = in[v];
#pragma unroll
      for (int k = 0; k < kElementsPerThread; ++k) x[k] = LoadElement<kDType>(raw, k);
    } else {
      for (int k = 0; k < n; ++k) x[k] = LoadElement<kDType>(src, first + k);
    }
    uint8_t q[kElementsPerThread];
    if (kSingleScale) {
#pragma unroll
      for (int k = 0; k < kElementsPerThread; ++k) q[k] = QuantizeOne<kHardware>(x[k], single_inv);
    } else {
      uint64_t row = (element_begin + first) / g.cols;
      uint64_t col = (element_begin + first) - row * g.cols;
      float inv = InverseScale(scales, g, row, col);
      for (int k = 0; k < n; ++k) {
        q[k] = QuantizeOne<kHardware>(x[k], inv);
        if (++col == g.cols) {
          col = 0;
          ++row;
          if (k + 1 < n) inv = InverseScale(scales, g, row, col);
        } else if (col % g.tile_cols == 0) {
          inv = InverseScale(scales, g, row, col);
        }
      }
    }
    if (aligned && n == kElementsPerThread) {
      uint4 packed;
      uint8_t* bytes = reinterpret_cast<uint8_t*>(&packed);
#pragma unroll
      for (int k = 0; k < kElementsPerThread; ++k) bytes[k] = q[k];
      reinterpret_cast<uint4*>(dst + first)[0] = packed;
    } else {
      for (int k = 0; k < n; ++k) dst[first + k] = q[k];
    }
  }
}

template <DType kDType, bool kHardware>
cudaError_t Launch(const void* src, uint8_t* dst, const float* scales, const TileGeometry& g, uint64_t begin,
                   uint64_t count, bool single_scale, cudaStream_t stream) {
  const bool aligned = reinterpret_cast<uintptr_t>(src) % 16 == 0 && reinterpret_cast<uintptr_t>(dst) % 16 == 0;
  const uint64_t groups = (count + kElementsPerThread - 1) / kElementsPerThread;
  int device = 0, sms = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  uint64_t blocks = (groups + kThreads - 1) / kThreads;
  const uint64_t max_blocks = static_cast<uint64_t>(sms > 0 ? sms : 1) * 16;
  if (blocks > max_blocks) blocks = max_blocks;
  if (blocks == 0) return cudaSuccess;
  if (single_scale) {
    QuantizeKernel<kDType, kHardware, true>
        <<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(src, dst, scales, g, begin, count, aligned);
  } else {
    QuantizeKernel<kDType, kHardware, false>
        <<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(src, dst, scales, g, begin, count, aligned);
  }
  return cudaGetLastError();
}

template <bool kHardware>
cudaError_t LaunchFor(DType dtype, const void* src, uint8_t* dst, const float* scales, const TileGeometry& g,
                      uint64_t begin, uint64_t count, bool single, cudaStream_t stream) {
  switch (dtype) {
    case DType::kBF16: return Launch<DType::kBF16, kHardware>(src, dst, scales, g, begin, count, single, stream);
    case DType::kF16: return Launch<DType::kF16, kHardware>(src, dst, scales, g, begin, count, single, stream);
    case DType::kF32: return Launch<DType::kF32, kHardware>(src, dst, scales, g, begin, count, single, stream);
    case DType::kF8E4M3: return Launch<DType::kF8E4M3, kHardware>(src, dst, scales, g, begin, count, single, stream);
    default: break;
  }
  return cudaErrorInvalidValue;
}

}  // namespace

int LaunchQuantize(DType dtype, const void* src, const Tiling& tiling, const float* scales, uint64_t element_begin,
                   uint64_t element_end, uint8_t* dst, void* stream, bool hardware_convert) {
  if (element_end <= element_begin) return cudaSuccess;
  if (tiling.cols == 0 || tiling.tile_rows == 0 || tiling.tile_cols == 0) return cudaErrorInvalidValue;
  TileGeometry g{tiling.cols, tiling.tile_rows, tiling.tile_cols, tiling.grid_cols(),
                 (element_begin / tiling.cols) / tiling.tile_rows};
  const bool single = tiling.num_tiles() == 1;
  const uint64_t count = element_end - element_begin;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  return hardware_convert ? LaunchFor<true>(dtype, src, dst, scales, g, element_begin, count, single, s)
                          : LaunchFor<false>(dtype, src, dst, scales, g, element_begin, count, single, s);
}

const char* ErrorName(int error) { return cudaGetErrorName(static_cast<cudaError_t>(error)); }

}  // namespace weightd::kernels::cuda
