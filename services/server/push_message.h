// One PushShards message as gRPC delivered it: ShardChunk's wire format in
// gRPC's slices (a 4 MiB message arrives as a few hundred HTTP/2-frame slices).
// A message holding only `data`, which is what clients send after `open`, is
// read in place: its bytes are views of the slices, never copied into a
// protobuf string. Any other message (the one with `open`, fields in another
// order or repeated, unknown fields) is parsed by protobuf, so every message
// means exactly what ShardChunk::ParseFromString makes of it. Not thread-safe;
// not movable (the views point into it).
#pragma once

#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "weightd/v1/loader.pb.h"

namespace weightd {

class PushMessage {
 public:
  // INVALID_ARGUMENT when the bytes are not a ShardChunk.
  static absl::StatusOr<std::unique_ptr<PushMessage>> Decode(grpc::ByteBuffer& buffer);
  // The same, from slices (tests and the fuzzer).
  static absl::StatusOr<std::unique_ptr<PushMessage>> Decode(std::vector<grpc::Slice> slices);

  PushMessage(const PushMessage&) = delete;
  PushMessage& operator=(const PushMessage&) = delete;

  // The message's fields other than `data` (`open`); empty for a message read in place.
  const v1::ShardChunk& fields() const { return fields_; }
  // `data`, in order, as pieces.
  const std::vector<std::string_view>& data() const { return pieces_; }
  uint64_t data_size() const { return data_size_; }
  // Whether `data` was read in place (a view of gRPC's slices).
  bool in_place() const { return in_place_; }

 private:
  PushMessage() = default;
  // Reads `data`'s tag and length from the start of the slices; true when the
  // message is that one field and nothing else.
  bool ReadInPlace();

  std::vector<grpc::Slice> slices_;
  v1::ShardChunk fields_;
  std::vector<std::string_view> pieces_;
  uint64_t data_size_ = 0;
  bool in_place_ = false;
};

}  // namespace weightd
