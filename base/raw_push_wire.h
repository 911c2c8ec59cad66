// The raw push protocol on weightd's Unix socket: one shard's PushShards stream
// without gRPC, for a client on the same node (docs/api.md, "Raw push on the
// Unix socket"). gRPC's receive path bounds a push at about 10 GB/s per host
// (docs/performance.md); this one is read by one blocking read per frame into a
// buffer the daemon keeps.
//
//   client -> daemon  kRawPushMagic (8 bytes), before anything else
//   daemon -> client  kRawPushMagic (accepted; a daemon without the protocol
//                     answers HTTP/2 or closes, and the client falls back to gRPC)
//   client -> daemon  frames: a 4-byte little-endian length, then that many bytes
//                     of a serialized ShardChunk (the first carries `open`, exactly
//                     as on gRPC); a frame of length 0 ends the stream (WritesDone)
//   daemon -> client  one reply: a 4-byte little-endian length, then EncodeRawPushReply's bytes
//                     (base/fd_passing.h's frame, with no descriptors)
//
// Thread-safe (pure functions).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace weightd {

inline constexpr std::string_view kRawPushMagic = "WDPUSH01";
inline constexpr size_t kRawPushLengthBytes = 4;
// A reply is a status and a PushSummary; anything near this is not one.
inline constexpr uint32_t kMaxRawPushReplyBytes = 64 << 10;

struct RawPushReply {
  int code = 0;         // a grpc::StatusCode (absl::StatusCode's numbers)
  std::string message;  // the status's message
  std::string summary;  // the serialized PushSummary, when code is 0
};

void AppendLength(uint32_t length, std::string& out);
uint32_t ReadLength(const unsigned char bytes[kRawPushLengthBytes]);

// The reply's bytes after its length: [u32 code][u32 message length][message][summary].
// The message is cut to fit kMaxRawPushReplyBytes.
std::string EncodeRawPushReply(const RawPushReply& reply);
// INVALID_ARGUMENT when `bytes` are not a reply.
absl::StatusOr<RawPushReply> DecodeRawPushReply(std::string_view bytes);

}  // namespace weightd
