// The files of a checkpoint directory besides its tensors, as `weightctl
// quantize` writes them: the shard index, config.json, and the small files
// (tokenizer, generation config, ...) copied over. Thread-safe (no state).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace weightd::ctl {

// Files at or above this size are not copied (they are data, not configuration).
inline constexpr uint64_t kMaxCopiedFileBytes = uint64_t{64} << 20;

// model.safetensors.index.json for `weight_map`: the input index's metadata kept
// (may be empty), its total_size replaced by `total_size`.
std::string BuildIndexJson(const std::string& input_index_json, const std::map<std::string, std::string>& weight_map,
                           uint64_t total_size);

absl::Status WriteTextFile(const std::string& path, const std::string& text);

// Copies every regular file under `from` smaller than kMaxCopiedFileBytes, keeping
// its relative path (sentence-transformers keeps modules in folders such as
// 1_Pooling/), except the checkpoint's own files: the .safetensors files directly
// in `from` and the names in `skip`. Hidden folders (.git, .cache) are not entered.
// Returns the relative paths copied, sorted.
absl::StatusOr<std::vector<std::string>> CopySmallFiles(const std::string& from, const std::string& to,
                                                        const std::vector<std::string>& skip);

}  // namespace weightd::ctl
