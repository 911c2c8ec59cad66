// GPU benchmarks, as ratios measured in the same process:
//  - the quantize kernel against cudaMemcpy device-to-device moving the same
//    bytes (the kernel reads 2 bytes and writes 1 per BF16 element; the copy
//    moves 1.5 bytes per element, i.e. the same 3 bytes of memory traffic);
//  - pinned host-to-device copy bandwidth of a given size (the baseline that
//    scripts/bench_cuda compares a weightd load against).
// Prints one JSON object. Usage: weightd-bench-cuda [--elements N] [--h2d-bytes B]
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/quantize.h"
#include "kernels/quantize_cuda.h"

namespace {

#define CHECK_CUDA(expr)                                                                 \
  do {                                                                                   \
    cudaError_t e = (expr);                                                              \
    if (e != cudaSuccess) {                                                              \
      std::fprintf(stderr, "%s: %s\n", #expr, cudaGetErrorString(e));                    \
      std::exit(1);                                                                      \
    }                                                                                    \
  } while (0)

template <typename F>
double TimeMs(F&& body, int iterations) {
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  body();  // warm-up
  cudaEventRecord(start);
  for (int i = 0; i < iterations; ++i) body();
  cudaEventRecord(stop);
  CHECK_CUDA(cudaEventSynchronize(stop));
  float ms = 0;
  cudaEventElapsedTime(&ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms / iterations;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t elements = 1ull << 29;  // 1 GiB of BF16
  uint64_t h2d_bytes = 1ull << 30;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--elements=", 11) == 0) elements = std::strtoull(argv[i] + 11, nullptr, 10);
    if (std::strncmp(argv[i], "--h2d-bytes=", 12) == 0) h2d_bytes = std::strtoull(argv[i] + 12, nullptr, 10);
  }
  const uint64_t cols = 8192, rows = elements / cols;
  elements = rows * cols;
  void *src, *dst, *copy_dst, *scales;
  CHECK_CUDA(cudaMalloc(&src, elements * 2));
  CHECK_CUDA(cudaMalloc(&dst, elements));
  CHECK_CUDA(cudaMalloc(&copy_dst, elements * 2));
  CHECK_CUDA(cudaMemset(src, 0x3C, elements * 2));
  std::vector<float> host_scales(((rows + 127) / 128) * ((cols + 127) / 128) + rows, 0.01f);
  CHECK_CUDA(cudaMalloc(&scales, host_scales.size() * sizeof(float)));
  CHECK_CUDA(cudaMemcpy(scales, host_scales.data(), host_scales.size() * sizeof(float), cudaMemcpyHostToDevice));

  const uint64_t same_bytes = elements * 3 / 2;
  const double copy_ms = TimeMs([&] { cudaMemcpyAsync(copy_dst, src, same_bytes, cudaMemcpyDeviceToDevice); }, 20);
  std::printf("{\n  \"elements\": %llu,\n  \"d2d_copy_ms\": %.4f,\n  \"d2d_copy_gbps\": %.1f", 
              static_cast<unsigned long long>(elements), copy_ms, 2.0 * same_bytes / copy_ms / 1e6);
  using weightd::kernels::Scheme;
  const std::pair<const char*, Scheme> schemes[] = {
      {"per_tensor", Scheme::kPerTensor}, {"per_channel", Scheme::kPerChannel}, {"block", Scheme::kBlock}};
  for (const auto& [name, scheme] : schemes) {
    weightd::kernels::Tiling tiling = weightd::kernels::TilingFor(scheme, rows, cols);
    for (bool hardware : {true, false}) {
      const double ms = TimeMs(
          [&] {
            weightd::kernels::cuda::LaunchQuantize(weightd::kernels::DType::kBF16, src, tiling,
                                                   static_cast<float*>(scales), 0, elements,
                                                   static_cast<uint8_t*>(dst), nullptr, hardware);
          },
          20);
      std::printf(",\n  \"%s_%s_ms\": %.4f,\n  \"%s_%s_vs_d2d\": %.3f", name, hardware ? "hw" : "sw", ms, name,
                  hardware ? "hw" : "sw", copy_ms / ms);
    }
  }
  CHECK_CUDA(cudaGetLastError());
  cudaFree(copy_dst);

  void* pinned;
  void* device;
  CHECK_CUDA(cudaHostAlloc(&pinned, h2d_bytes, cudaHostAllocDefault));
  CHECK_CUDA(cudaMalloc(&device, h2d_bytes));
  std::memset(pinned, 1, h2d_bytes);
  const double h2d_ms = TimeMs([&] { cudaMemcpyAsync(device, pinned, h2d_bytes, cudaMemcpyHostToDevice); }, 3);
  std::printf(",\n  \"h2d_pinned_bytes\": %llu,\n  \"h2d_pinned_gbps\": %.2f\n}\n",
              static_cast<unsigned long long>(h2d_bytes), h2d_bytes / h2d_ms / 1e6);
  return 0;
}
