#include "kernels/float_convert.h"

#include <cstddef>

#include "kernels/dtype.h"
#include "kernels/quantize.h"

namespace weightd::kernels {

float LoadAsFloat(DType dtype, const void* src, size_t i) {
  return WithLoader(dtype, [&](auto load) { return load(src, i); });
}

}  // namespace weightd::kernels
