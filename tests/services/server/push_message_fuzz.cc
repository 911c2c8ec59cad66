// libFuzzer target for PushMessage: differential against protobuf. The input's
// first byte sets the slice size (1 to 256 bytes), the rest is one message's
// bytes, cut into slices of that size as gRPC would hand them over. Decode must
// accept exactly what ShardChunk::ParseFromString accepts, and then give the same
// `open` and the same `data`.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "services/server/push_message.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t slice_size = static_cast<size_t>(data[0]) + 1;
  const std::string wire(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::vector<grpc::Slice> slices;
  for (size_t at = 0; at < wire.size(); at += slice_size) {
    const std::string part = wire.substr(at, slice_size);
    slices.emplace_back(part.data(), part.size());
  }
  weightd::v1::ShardChunk expected;
  const bool parses = expected.ParseFromString(wire);
  auto message = weightd::PushMessage::Decode(std::move(slices));
  if (message.ok() != parses) {
    std::fprintf(stderr, "protobuf %s, PushMessage %s\n", parses ? "parses" : "refuses",
                 message.ok() ? "accepts" : message.status().ToString().c_str());
    std::abort();
  }
  if (!parses) {
    if (message.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
    return 0;
  }
  std::string joined;
  for (std::string_view piece : (*message)->data()) joined.append(piece);
  if (joined != expected.data() || (*message)->data_size() != expected.data().size()) std::abort();
  if ((*message)->fields().has_open() != expected.has_open() ||
      (*message)->fields().open().SerializeAsString() != expected.open().SerializeAsString()) {
    std::abort();
  }
  return 0;
}
