// GPU quantization against the CPU reference, byte for byte: every scheme and
// input dtype, awkward shapes, random and adversarial data, through the CUDA
// backend's staging ring (default and tiny, so tensors span many chunks).
// Skips where no GPU is visible.
#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/float_convert.h"
#include "kernels/quantize.h"
#include "kernels/quantize_cuda.h"
#include "services/device/cuda/cuda_backend.h"

namespace weightd::cuda {
namespace {

using kernels::DType;
using kernels::Scheme;

struct Shape {
  size_t rows, cols;
};

uint16_t Bf16Bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return static_cast<uint16_t>((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
}

uint16_t HalfBits(float f) { return kernels::HalfBitsFromFloat(f); }

// Values as a checkpoint could hold them, in `dtype`'s bytes. `adversarial` mixes
// signed zeros, subnormals, huge and tiny magnitudes, zero rows and (with
// non-finite) NaN and Inf.
std::vector<uint8_t> MakeTensor(DType dtype, Shape shape, uint32_t seed, bool adversarial, bool non_finite) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::uniform_int_distribution<int> pick(0, 15);
  const size_t n = shape.rows * shape.cols;
  std::vector<uint8_t> bytes(n * kernels::DTypeSize(dtype));
  for (size_t i = 0; i < n; ++i) {
    float x = normal(rng);
    if (adversarial) {
      const size_t row = i / shape.cols;
      switch (pick(rng)) {
        case 0: x = 0.0f; break;
        case 1: x = -0.0f; break;
        case 2: x = std::ldexp(normal(rng), -20); break;
        case 3: x = normal(rng) * 3e4f; break;
        case 4: x = non_finite ? NAN : 1.0f; break;
        case 5: x = non_finite ? -INFINITY : -2.0f; break;
        default: break;
      }
      if (row % 5 == 3) x = row % 2 ? 0.0f : -0.0f;  // whole zero rows
    }
    if (dtype == DType::kBF16) {
      uint16_t b = Bf16Bits(x);
      std::memcpy(&bytes[i * 2], &b, 2);
    } else if (dtype == DType::kF16) {
      uint16_t h = HalfBits(x);
      std::memcpy(&bytes[i * 2], &h, 2);
    } else {
      std::memcpy(&bytes[i * 4], &x, 4);
    }
  }
  return bytes;
}

class CudaQuantizeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (VisibleDeviceCount() == 0) GTEST_SKIP() << "no CUDA device visible: GPU tests skipped";
  }
};

void CheckBackend(CudaBackend& backend, const char* ring) {
  const std::vector<Shape> shapes = {{1, 1}, {1, 7}, {7, 4097}, {129, 257}, {300, 128}, {256, 256}, {3, 100003},
                                     {1031, 1000}};
  uint32_t seed = 1;
  for (Scheme scheme : {Scheme::kPerTensor, Scheme::kPerChannel, Scheme::kBlock}) {
    for (DType dtype : {DType::kBF16, DType::kF16, DType::kF32}) {
      for (Shape shape : shapes) {
        for (int variant = 0; variant < 3; ++variant) {
          const bool adversarial = variant > 0, non_finite = variant == 2;
          SCOPED_TRACE(testing::Message() << ring << " scheme " << static_cast<int>(scheme) << " dtype "
                                          << kernels::DTypeName(dtype) << " shape " << shape.rows << "x"
                                          << shape.cols << " variant " << variant);
          std::vector<uint8_t> src = MakeTensor(dtype, shape, seed++, adversarial, non_finite);
          kernels::Tiling tiling = kernels::TilingFor(scheme, shape.rows, shape.cols);
          std::vector<float> scales(tiling.num_tiles());
          ASSERT_TRUE(kernels::TileScales(scheme, dtype, src.data(), tiling, kernels::NonFinitePolicy::kSaturate,
                                          scales.data())
                          .ok());
          const size_t n = shape.rows * shape.cols;
          std::vector<uint8_t> expected(n);
          kernels::QuantizeRows(dtype, src.data(), tiling, scales.data(), 0, shape.rows, expected.data());

          auto arena = backend.Allocate(0, n + 256, "test");
          ASSERT_TRUE(arena.ok()) << arena.status();
          ASSERT_TRUE(backend.Quantize(**arena, 256, dtype, src.data(), tiling, scales.data()).ok());
          ASSERT_TRUE(backend.Synchronize(0).ok());
          std::vector<uint8_t> actual(n);
          ASSERT_TRUE(backend.Read(**arena, 256, n, actual.data()).ok());
          size_t first_difference = n;
          for (size_t i = 0; i < n && first_difference == n; ++i) {
            if (actual[i] != expected[i]) first_difference = i;
          }
          ASSERT_EQ(first_difference, n) << "byte " << first_difference << ": GPU 0x" << std::hex
                                         << int(actual[first_difference]) << ", CPU 0x"
                                         << int(expected[first_difference]);
        }
      }
    }
  }
}

TEST_F(CudaQuantizeTest, EverySchemeDtypeAndShapeEqualsTheCpuReference) {
  auto backend = CudaBackend::Create({});
  ASSERT_TRUE(backend.ok()) << backend.status();
  CheckBackend(**backend, "default ring");
}

TEST_F(CudaQuantizeTest, ATinyRingSplitsTensorsIntoManyChunksWithTheSameBytes) {
  CudaBackendOptions options;
  options.staging_ring_bytes = 4 * 64 * 1024;
  options.staging_slots = 4;
  auto backend = CudaBackend::Create(options);
  ASSERT_TRUE(backend.ok()) << backend.status();
  CheckBackend(**backend, "tiny ring");
}

TEST_F(CudaQuantizeTest, HardwareAndSoftwareEncodersAgreeOnEveryBf16Pattern) {
  // Every BF16 bit pattern, scale 1: the full input domain of the encoder.
  const size_t n = 65536;
  std::vector<uint16_t> src(n);
  for (size_t i = 0; i < n; ++i) src[i] = static_cast<uint16_t>(i);
  kernels::Tiling tiling = kernels::TilingFor(Scheme::kPerTensor, 256, 256);
  float scale = 1.0f;
  std::vector<uint8_t> expected(n);
  kernels::QuantizeRows(DType::kBF16, src.data(), tiling, &scale, 0, 256, expected.data());
  void *d_src, *d_dst, *d_scale;
  ASSERT_EQ(cudaMalloc(&d_src, n * 2), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_dst, n), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_scale, 4), cudaSuccess);
  cudaMemcpy(d_src, src.data(), n * 2, cudaMemcpyHostToDevice);
  cudaMemcpy(d_scale, &scale, 4, cudaMemcpyHostToDevice);
  for (bool hardware : {true, false}) {
    SCOPED_TRACE(hardware ? "hardware cvt" : "software encoder");
    ASSERT_EQ(kernels::cuda::LaunchQuantize(DType::kBF16, d_src, tiling, static_cast<float*>(d_scale), 0, n,
                                            static_cast<uint8_t*>(d_dst), nullptr, hardware),
              0);
    std::vector<uint8_t> actual(n);
    ASSERT_EQ(cudaMemcpy(actual.data(), d_dst, n, cudaMemcpyDeviceToHost), cudaSuccess);
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(actual[i], expected[i]) << "bf16 bits 0x" << std::hex << i;
  }
  cudaFree(d_src);
  cudaFree(d_dst);
  cudaFree(d_scale);
}

TEST_F(CudaQuantizeTest, EveryBf16AndF16PatternUnderBlockScalesOnVectorAndScalarPaths) {
  // Every 16-bit pattern as a 256 x 256 tensor of 2x2 blocks whose scales range from
  // tiny (1 / scale overflows) to large, quantized from element 0 (16-byte vector
  // groups) and from element 3 (the scalar path), against the CPU reference.
  const size_t n = 65536;
  std::vector<uint16_t> src(n);
  for (size_t i = 0; i < n; ++i) src[i] = static_cast<uint16_t>(i * 40503u);  // every pattern, shuffled
  kernels::Tiling tiling = kernels::TilingFor(Scheme::kBlock, 256, 256);
  std::vector<float> scales = {1.0f, 0.37f, 3.1e-5f, 1e-39f};
  void *d_src, *d_dst, *d_scales;
  ASSERT_EQ(cudaMalloc(&d_src, n * 2), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_dst, n), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_scales, scales.size() * 4), cudaSuccess);
  cudaMemcpy(d_src, src.data(), n * 2, cudaMemcpyHostToDevice);
  cudaMemcpy(d_scales, scales.data(), scales.size() * 4, cudaMemcpyHostToDevice);
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    std::vector<uint8_t> expected(n);
    kernels::QuantizeRows(dtype, src.data(), tiling, scales.data(), 0, 256, expected.data());
    for (size_t begin : {size_t{0}, size_t{3}}) {
      for (bool hardware : {true, false}) {
        SCOPED_TRACE(::testing::Message() << kernels::DTypeName(dtype) << " from element " << begin
                                          << (hardware ? " hardware" : " software"));
        ASSERT_EQ(cudaMemset(d_dst, 0x55, n), cudaSuccess);
        ASSERT_EQ(kernels::cuda::LaunchQuantize(dtype, static_cast<uint16_t*>(d_src) + begin, tiling,
                                                static_cast<float*>(d_scales), begin, n,
                                                static_cast<uint8_t*>(d_dst) + begin, nullptr, hardware),
                  0);
        std::vector<uint8_t> actual(n);
        ASSERT_EQ(cudaMemcpy(actual.data(), d_dst, n, cudaMemcpyDeviceToHost), cudaSuccess);
        for (size_t i = begin; i < n; ++i) {
          ASSERT_EQ(actual[i], expected[i]) << "element " << i << " bits 0x" << std::hex << src[i];
        }
      }
    }
  }
  cudaFree(d_src);
  cudaFree(d_dst);
  cudaFree(d_scales);
}

}  // namespace
}  // namespace weightd::cuda
