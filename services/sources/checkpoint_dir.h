// Finds the files of a checkpoint on local disk: one `model.safetensors`, or
// shards named by `model.safetensors.index.json` (or every *.safetensors when
// there is no index), plus `config.json`. Paths are confined to the model root
// (services/sources/confined_path.h): every file is opened beneath it.
// Thread-safe (no state).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/unique_fd.h"
#include "services/sources/weight_map.h"

namespace weightd {

struct CheckpointFiles {
  std::string root;                              // the model root, as configured
  std::string relative_dir;                      // the checkpoint's directory, relative to root
  std::string dir;                               // the same directory, absolute (for messages and tools)
  std::vector<std::string> shards;               // file names in `dir`, in load order
  std::map<std::string, std::string> weight_map; // tensor -> shard file; empty without an index
  std::string config_json;                       // empty when there is no config.json
};

// `path` is relative to `model_root` (or absolute inside it) and names a directory or
// one .safetensors file. INVALID_ARGUMENT for a path that is lexically outside the root
// (decided before any lookup) or a malformed index, PERMISSION_DENIED for one that
// resolves outside it through a symlink, NOT_FOUND for missing files,
// FAILED_PRECONDITION without a model root.
absl::StatusOr<CheckpointFiles> FindCheckpoint(const std::string& model_root, const std::string& path);

// Opens one shard of `files` for reading, beneath the model root.
absl::StatusOr<UniqueFd> OpenShard(const CheckpointFiles& files, const std::string& shard);

}  // namespace weightd
