#include "kernels/fp8_e4m3.h"

#include <cstdint>

#include "kernels/quantize.h"

namespace weightd::kernels {

uint8_t EncodeE4M3(float y) { return fp8::E4M3FromFloat(y); }

float DecodeE4M3(uint8_t q) { return fp8::FloatFromE4M3(q); }

}  // namespace weightd::kernels
