// ShardChunk's wire format as the pushing clients write it by hand (a message's
// data goes straight into the buffer that is sent; shard_stream.h).
// Thread-safe (pure functions).
#pragma once

#include <cstdint>
#include <string>

namespace weightd::client {

// A serialized ShardChunk holding only `open` for shard `shard_file` of `size` bytes.
std::string OpenMessage(const std::string& model_id, const std::string& shard_file, uint64_t size);
// The tag and length of ShardChunk's `data` (field 2, length-delimited) of `length`
// bytes: followed by the bytes, a whole ShardChunk. At most kMaxDataFieldPrefix bytes.
std::string DataFieldPrefix(uint64_t length);
inline constexpr size_t kMaxDataFieldPrefix = 11;

}  // namespace weightd::client
