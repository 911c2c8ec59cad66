// The fast CPU kernels (kernels/quantize_fast.h), one benchmark per scheme: a
// whole tensor's scales (TileScalesFast) then its FP8 bytes (QuantizeRowsFast),
// reported as bytes of input processed per second, beside a plain memcpy of the
// same bytes in the same run. Arguments: input dtype (0 BF16, 1 F32) and threads.
//
//   build/bin/weightd-bench-cpu --benchmark_min_time=1
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/dtype.h"
#include "kernels/quantize.h"
#include "kernels/quantize_fast.h"

namespace weightd::kernels {
namespace {

// A Llama-8B MLP weight: 14336 x 4096.
constexpr size_t kRows = 14336, kCols = 4096;

DType InputDType(const benchmark::State& state) { return state.range(0) == 0 ? DType::kBF16 : DType::kF32; }

// Weight-like values: normal, standard deviation 0.02, in the input dtype.
const std::vector<uint8_t>& Input(DType dtype) {
  static std::vector<uint8_t> bf16, f32;
  std::vector<uint8_t>& bytes = dtype == DType::kBF16 ? bf16 : f32;
  if (bytes.empty()) {
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.0f, 0.02f);
    bytes.resize(kRows * kCols * DTypeSize(dtype));
    for (size_t i = 0; i < kRows * kCols; ++i) {
      const float v = normal(rng);
      uint32_t bits;
      std::memcpy(&bits, &v, 4);
      if (dtype == DType::kBF16) {
        const uint16_t h = static_cast<uint16_t>(bits >> 16);
        std::memcpy(bytes.data() + 2 * i, &h, 2);
      } else {
        std::memcpy(bytes.data() + 4 * i, &bits, 4);
      }
    }
  }
  return bytes;
}

void BM_Quantize(benchmark::State& state, Scheme scheme) {
  const DType dtype = InputDType(state);
  const int threads = static_cast<int>(state.range(1));
  const std::vector<uint8_t>& src = Input(dtype);
  const Tiling tiling = TilingFor(scheme, kRows, kCols);
  std::vector<float> scales(tiling.num_tiles());
  std::vector<uint8_t> dst(kRows * kCols);
  for (auto _ : state) {
    if (!TileScalesFast(scheme, dtype, src.data(), tiling, NonFinitePolicy::kFail, scales.data(), threads).ok()) {
      state.SkipWithError("non-finite input");
      break;
    }
    QuantizeRowsFast(dtype, src.data(), tiling, scales.data(), 0, kRows, dst.data(), threads);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * src.size()));
}

// The same input bytes copied: what the memory system gives one pass over them.
void BM_Memcpy(benchmark::State& state) {
  const std::vector<uint8_t>& src = Input(InputDType(state));
  std::vector<uint8_t> dst(src.size());
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), src.size());
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * src.size()));
}

void Args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"f32", "threads"});
  for (int dtype : {0, 1}) {
    for (int threads : {1, 2}) b->Args({dtype, threads});
  }
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

BENCHMARK_CAPTURE(BM_Quantize, per_tensor, Scheme::kPerTensor)->Apply(Args);
BENCHMARK_CAPTURE(BM_Quantize, per_channel, Scheme::kPerChannel)->Apply(Args);
BENCHMARK_CAPTURE(BM_Quantize, block, Scheme::kBlock)->Apply(Args);
BENCHMARK(BM_Memcpy)->ArgNames({"f32"})->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace weightd::kernels

BENCHMARK_MAIN();
