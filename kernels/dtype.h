// Element types weightd reads and writes, named as safetensors names them.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace weightd::kernels {

enum class DType { kBF16, kF16, kF32, kF8E4M3 };

constexpr size_t DTypeSize(DType t) {
  switch (t) {
    case DType::kBF16: return 2;
    case DType::kF16: return 2;
    case DType::kF32: return 4;
    case DType::kF8E4M3: return 1;
  }
  return 0;
}

inline const char* DTypeName(DType t) {
  switch (t) {
    case DType::kBF16: return "BF16";
    case DType::kF16: return "F16";
    case DType::kF32: return "F32";
    case DType::kF8E4M3: return "F8_E4M3";
  }
  return "?";
}

// nullopt for a dtype weightd does not handle (I64, BOOL, F8_E5M2, ...).
inline std::optional<DType> ParseDType(std::string_view name) {
  if (name == "BF16") return DType::kBF16;
  if (name == "F16") return DType::kF16;
  if (name == "F32") return DType::kF32;
  if (name == "F8_E4M3") return DType::kF8E4M3;
  return std::nullopt;
}

}  // namespace weightd::kernels
