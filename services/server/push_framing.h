// The message rules of one PushShards stream, apart from gRPC so that they can be
// fuzzed: the first message carries a valid `open` (and may carry data), no later
// one does. Every violation is INVALID_ARGUMENT naming the shard. Thread-safe (no state).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "weightd/v1/loader.pb.h"

namespace weightd {

// Optional request metadata of a PushShards stream, the same as its `open`. They
// name the shard even when the stream ends before its first message reaches the
// daemon (a client cancelling at once), so the load fails instead of waiting.
inline constexpr char kPushModelIdKey[] = "weightd-model-id";
inline constexpr char kPushShardFileKey[] = "weightd-shard-file";

// `open` alone: a model id, a shard file name that stays in its directory, and a
// sha256 that is empty or 64 lowercase hex digits.
absl::Status ValidateShardOpen(const v1::ShardOpen& open);

// One message of a stream; `first` is true for the stream's first message, and
// `file` names the shard of the stream once it is open (for messages).
absl::Status CheckShardChunk(const v1::ShardChunk& chunk, bool first, const std::string& file);

}  // namespace weightd
