// The header of one safetensors shard: what it declares, and the validation that
// turns untrusted header JSON into it. A ShardHeader that exists has passed every
// check (types, dtypes, sizes, contiguous offsets, limits), so later stages may
// trust its offsets. Pure functions and plain values; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/dtype.h"

namespace weightd::safetensors {

// Bounds on what one shard may declare, so a hostile header cannot make the
// daemon allocate or iterate without limit.
struct ParseLimits {
  uint64_t max_header_bytes = 100ull << 20;
  size_t max_tensors = 1 << 20;
  size_t max_name_bytes = 1024;
  size_t max_rank = 8;
};

struct TensorHeader {
  std::string name;
  kernels::DType dtype = kernels::DType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // relative to the data section
  uint64_t size() const { return end - begin; }
  // Validated not to overflow (an empty shape is a scalar: one element).
  uint64_t num_elements() const;
};

struct ShardHeader {
  uint64_t header_size = 0;           // N
  std::vector<TensorHeader> tensors;  // sorted by (begin, end); contiguous from 0
  std::vector<std::pair<std::string, std::string>> metadata;  // in header order
  uint64_t data_size = 0;             // end of the last tensor
  uint64_t data_start() const { return 8 + header_size; }
  uint64_t file_size() const { return data_start() + data_size; }
};

// Validates the header JSON (the N bytes after the length prefix) and returns what
// it declares. Every error is INVALID_ARGUMENT; shard_name is used only in messages.
absl::StatusOr<ShardHeader> ParseShardHeaderJson(std::string_view shard_name,
                                                 std::string_view json,
                                                 const ParseLimits& limits);

// Index of the first byte of `text` that is not part of well-formed UTF-8
// (overlong forms, surrogates and code points above U+10FFFF included), or nullopt.
std::optional<size_t> FindInvalidUtf8(std::string_view text);

}  // namespace weightd::safetensors
