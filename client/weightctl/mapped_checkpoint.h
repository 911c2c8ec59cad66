// A safetensors checkpoint (one file, or a directory of shards) mapped read-only,
// with every tensor's header and bytes by name. Used by the offline commands
// (verify) that need random access to whole tensors.
// Thread-safe once built (read-only).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "services/safetensors/header.h"

namespace weightd::ctl {

struct MappedTensor {
  safetensors::TensorHeader header;
  const uint8_t* bytes = nullptr;
  std::string shard;  // file name, for messages
};

class MappedCheckpoint {
 public:
  // `path`: a .safetensors file, or a directory whose *.safetensors files are all read.
  static absl::StatusOr<std::unique_ptr<MappedCheckpoint>> Open(const std::string& path);
  ~MappedCheckpoint();

  const std::map<std::string, MappedTensor>& tensors() const { return tensors_; }
  // config.json beside the shards; empty when there is none.
  const std::string& config_json() const { return config_json_; }

 private:
  MappedCheckpoint() = default;
  absl::Status MapShard(const std::string& path, const std::string& name);

  std::vector<std::pair<void*, size_t>> mappings_;
  std::map<std::string, MappedTensor> tensors_;
  std::string config_json_;
};

}  // namespace weightd::ctl
