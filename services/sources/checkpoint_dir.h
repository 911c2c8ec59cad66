// Finds the files of a checkpoint on local disk: one `model.safetensors`, or
// shards named by `model.safetensors.index.json` (or every *.safetensors when
// there is no index), plus `config.json`. Paths are confined to the model root.
// Thread-safe (no state).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace weightd {

struct CheckpointFiles {
  std::string dir;                               // absolute, inside the model root
  std::vector<std::string> shards;               // file names in `dir`, in load order
  std::map<std::string, std::string> weight_map; // tensor -> shard file; empty without an index
  std::string config_json;                       // empty when there is no config.json
};

// `path` is relative to `model_root` (or absolute inside it) and names a directory or
// one .safetensors file. NOT_FOUND for missing files, INVALID_ARGUMENT for a path
// outside the root or a malformed index, FAILED_PRECONDITION without a model root.
absl::StatusOr<CheckpointFiles> FindCheckpoint(const std::string& model_root, const std::string& path);

// Parses an index's weight_map; INVALID_ARGUMENT naming what is wrong.
absl::StatusOr<std::map<std::string, std::string>> ParseWeightMap(const std::string& index_json);

}  // namespace weightd
