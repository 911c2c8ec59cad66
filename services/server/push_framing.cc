#include "services/server/push_framing.h"

#include "absl/strings/str_cat.h"
#include "services/sources/weight_map.h"

namespace weightd {
namespace {

bool IsLowerHex(const std::string& s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

absl::Status ValidateShardOpen(const v1::ShardOpen& open) {
  if (open.model_id().empty()) return absl::InvalidArgumentError("open.model_id is empty");
  if (open.shard_file().empty()) return absl::InvalidArgumentError("open.shard_file is empty");
  if (!IsPlainFileName(open.shard_file())) {
    return absl::InvalidArgumentError(absl::StrCat("open.shard_file '", open.shard_file(),
                                                   "' must be a file name without '/'"));
  }
  if (!open.sha256().empty() && (open.sha256().size() != 64 || !IsLowerHex(open.sha256()))) {
    return absl::InvalidArgumentError(absl::StrCat("shard '", open.shard_file(),
                                                   "': open.sha256 must be 64 lowercase hex digits"));
  }
  return absl::OkStatus();
}

absl::Status CheckShardChunk(const v1::ShardChunk& chunk, bool first, const std::string& file) {
  if (first) {
    if (!chunk.has_open()) {
      return absl::InvalidArgumentError("the first message of a PushShards stream must carry `open`");
    }
    return ValidateShardOpen(chunk.open());
  }
  if (chunk.has_open()) return absl::InvalidArgumentError(absl::StrCat("shard '", file, "': `open` sent twice"));
  return absl::OkStatus();
}

}  // namespace weightd
