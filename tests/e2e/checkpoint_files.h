// Test helpers for end-to-end tests: write small safetensors checkpoints by hand
// and read back what weightd or weightctl wrote (headers, config.json) as JSON.
// Thread-safe (no state).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace weightd::testing {

std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& bytes);

// A safetensors file: 8-byte little-endian header length, header, data. The
// length field may lie (length_override).
std::string Shard(const std::string& header, const std::string& data, int64_t length_override = -1);

// One tensor of a hand-written checkpoint: dtype, shape and its raw bytes.
struct RawTensor {
  std::string dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};
// A safetensors file holding `tensors` in name order.
std::string ShardOf(const std::map<std::string, RawTensor>& tensors);

// The header of one safetensors file, without __metadata__: name -> {dtype, shape, data_offsets}.
nlohmann::json SafetensorsHeader(const std::string& path);
// The headers of every .safetensors file in `dir`, merged.
nlohmann::json CheckpointTensors(const std::string& dir);
// The bytes of one tensor of a .safetensors file.
std::string TensorBytes(const std::string& path, const std::string& name);

}  // namespace weightd::testing
