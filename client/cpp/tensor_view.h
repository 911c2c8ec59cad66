// What a worker gets for one tensor of a mapped rank: where its bytes are (a host
// pointer for host devices, a device pointer for CUDA), how to read them
// (safetensors dtype and shape) and on which device they live. A plain value; it
// points into a Mapping and is valid only while that Mapping lives.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "weightd/v1/loader.pb.h"

namespace weightd::client {

struct TensorView {
  std::string name;
  // Allocation base + the manifest's offset: no copy was made.
  void* data = nullptr;
  std::string dtype;  // safetensors dtype: F8_E4M3, BF16, F16, F32
  std::vector<int64_t> shape;
  uint64_t size_bytes = 0;
  v1::DeviceKind device_kind = v1::DEVICE_KIND_UNSPECIFIED;
  uint32_t device = 0;  // device index as the daemon numbers them (CUDA ordinal for GPUs)
};

}  // namespace weightd::client
