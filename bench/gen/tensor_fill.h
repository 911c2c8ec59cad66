// Deterministic synthetic weight values: the same (seed, tensor name, element index)
// gives the same bytes on every platform and compiler, and any element range can be
// generated independently, so a tensor can be written in pieces. Stateless; thread-safe.
//
// Distributions (chosen by tensor name): norms ("...norm.weight") are 1.0 +/- 0.05;
// embeddings and lm_head ~ N(0, 0.02); every other tensor (the linear projections)
// ~ N(0, 0.02) with about 0.01% outliers of magnitude 0.1 to 0.5. "Normal" is a sum
// of seven uniforms in integer arithmetic (no libm, no std::*_distribution, whose
// results are implementation-defined), so it is bounded at about 4.6 sigma.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "kernels/dtype.h"

namespace weightd::bench {

// 64-bit FNV-1a: the tensor-name hash that seeds each tensor's values.
uint64_t Fnv1a64(std::string_view bytes);

// The fp32 value of element `index` of tensor `name`.
float SyntheticValue(uint64_t seed, std::string_view name, uint64_t index);

// IEEE fp32 -> bfloat16 / binary16 bits, round-to-nearest-even; NaN stays a quiet
// NaN, overflow becomes infinity, F16 subnormals are rounded exactly.
uint16_t Fp32ToBf16Bits(float value);
uint16_t Fp32ToF16Bits(float value);

// Writes elements [element_offset, element_offset + out.size() / DTypeSize(dtype))
// of tensor `name` to `out`, little-endian. Preconditions: dtype is BF16, F16 or
// F32 (aborts otherwise) and out.size() is a multiple of its size.
void FillTensor(uint64_t seed, std::string_view name, kernels::DType dtype, uint64_t element_offset,
                std::span<uint8_t> out);

// The fast fill (weightd-gen --fill=fast): the tensor's first kFastPeriod exact
// values, repeated in blocks of kFastPeriod elements, every block after the first
// rotated by an amount drawn from (seed, name, block index). Same distribution,
// determinism and random access as FillTensor, at memcpy speed: for benchmarks
// that generate hundreds of gigabytes. Immutable after construction; thread-safe.
inline constexpr uint64_t kFastPeriod = 8192;

class FastTensorFill {
 public:
  // Same preconditions on dtype as FillTensor.
  FastTensorFill(uint64_t seed, std::string_view name, kernels::DType dtype);
  // Same contract as FillTensor.
  void Fill(uint64_t element_offset, std::span<uint8_t> out) const;

 private:
  uint64_t key_;
  size_t element_size_;
  std::vector<uint8_t> twice_;  // the period's bytes, twice: any rotation is one copy
};

}  // namespace weightd::bench
