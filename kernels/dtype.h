// Element types weightd reads and writes, named as safetensors names them.
// BF16, F16 and F32 can be quantized; F8_E4M3 is already FP8; every other
// safetensors dtype (integer position ids, masks, F64 buffers) is only carried
// through unchanged.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace weightd::kernels {

enum class DType { kBF16, kF16, kF32, kF8E4M3, kF64, kF8E5M2, kI64, kI32, kI16, kI8, kU64, kU32, kU16, kU8, kBool };

// The dtypes the kernels quantize.
constexpr bool IsQuantizable(DType t) { return t == DType::kBF16 || t == DType::kF16 || t == DType::kF32; }

constexpr size_t DTypeSize(DType t) {
  switch (t) {
    case DType::kBF16: return 2;
    case DType::kF16: return 2;
    case DType::kF32: return 4;
    case DType::kF8E4M3: return 1;
    case DType::kF64: return 8;
    case DType::kF8E5M2: return 1;
    case DType::kI64: return 8;
    case DType::kI32: return 4;
    case DType::kI16: return 2;
    case DType::kI8: return 1;
    case DType::kU64: return 8;
    case DType::kU32: return 4;
    case DType::kU16: return 2;
    case DType::kU8: return 1;
    case DType::kBool: return 1;
  }
  return 0;
}

inline const char* DTypeName(DType t) {
  switch (t) {
    case DType::kBF16: return "BF16";
    case DType::kF16: return "F16";
    case DType::kF32: return "F32";
    case DType::kF8E4M3: return "F8_E4M3";
    case DType::kF64: return "F64";
    case DType::kF8E5M2: return "F8_E5M2";
    case DType::kI64: return "I64";
    case DType::kI32: return "I32";
    case DType::kI16: return "I16";
    case DType::kI8: return "I8";
    case DType::kU64: return "U64";
    case DType::kU32: return "U32";
    case DType::kU16: return "U16";
    case DType::kU8: return "U8";
    case DType::kBool: return "BOOL";
  }
  return "?";
}

// nullopt for a name safetensors does not define.
inline std::optional<DType> ParseDType(std::string_view name) {
  for (DType t : {DType::kBF16, DType::kF16, DType::kF32, DType::kF8E4M3, DType::kF64, DType::kF8E5M2, DType::kI64,
                  DType::kI32, DType::kI16, DType::kI8, DType::kU64, DType::kU32, DType::kU16, DType::kU8,
                  DType::kBool}) {
    if (name == DTypeName(t)) return t;
  }
  return std::nullopt;
}

}  // namespace weightd::kernels
