// PushMessage reads a data-only ShardChunk in place, from any slicing, and every
// other message the way protobuf does.
#include "services/server/push_message.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace weightd {
namespace {

// `bytes` cut into slices of `size` bytes (the last may be shorter).
std::vector<grpc::Slice> Sliced(const std::string& bytes, size_t size) {
  std::vector<grpc::Slice> slices;
  for (size_t at = 0; at < bytes.size(); at += size) {
    const std::string part = bytes.substr(at, size);
    slices.emplace_back(part.data(), part.size());
  }
  return slices;
}

std::string Joined(const PushMessage& message) {
  std::string joined;
  for (std::string_view piece : message.data()) joined.append(piece);
  return joined;
}

std::string DataBytes(size_t n) {
  std::string data(n, '\0');
  for (size_t i = 0; i < n; ++i) data[i] = static_cast<char>(i * 131 + 7);
  return data;
}

TEST(PushMessage, ADataOnlyMessageIsReadInPlaceWhateverItsSlices) {
  v1::ShardChunk chunk;
  chunk.set_data(DataBytes(100000));
  const std::string wire = chunk.SerializeAsString();
  for (size_t slice : {size_t{1}, size_t{2}, size_t{3}, size_t{16384}, wire.size()}) {
    auto message = PushMessage::Decode(Sliced(wire, slice));
    ASSERT_TRUE(message.ok()) << message.status();
    EXPECT_TRUE((*message)->in_place());
    EXPECT_FALSE((*message)->fields().has_open());
    EXPECT_EQ((*message)->data_size(), chunk.data().size());
    EXPECT_EQ(Joined(**message), chunk.data()) << "slices of " << slice;
  }
}

TEST(PushMessage, FromAByteBufferAsGrpcHandsItOver) {
  v1::ShardChunk chunk;
  chunk.set_data(DataBytes(5000));
  const std::string wire = chunk.SerializeAsString();
  std::vector<grpc::Slice> slices = Sliced(wire, 1000);
  grpc::ByteBuffer buffer(slices.data(), slices.size());
  auto message = PushMessage::Decode(buffer);
  ASSERT_TRUE(message.ok()) << message.status();
  EXPECT_TRUE((*message)->in_place());
  EXPECT_EQ(Joined(**message), chunk.data());
}

TEST(PushMessage, OtherMessagesMeanWhatProtobufMakesOfThem) {
  v1::ShardChunk open;
  open.mutable_open()->set_model_id("m");
  open.mutable_open()->set_shard_file("a.safetensors");
  open.set_data("abc");
  v1::ShardChunk first_data, last_data;
  first_data.set_data("first");
  last_data.set_data("last");
  std::string unknown_field = first_data.SerializeAsString() + std::string("\x18\x05", 2);  // field 3, varint 5
  // A non-minimal length (3 as three varint bytes): still protobuf's `data`.
  const std::string padded_length = std::string("\x12\x83\x80\x00", 4) + "xyz";
  for (const std::string& wire : {open.SerializeAsString(), first_data.SerializeAsString() + last_data.SerializeAsString(),
                                  unknown_field, padded_length, std::string()}) {
    v1::ShardChunk expected;
    ASSERT_TRUE(expected.ParseFromString(wire));
    auto message = PushMessage::Decode(Sliced(wire, 2));
    ASSERT_TRUE(message.ok()) << message.status();
    EXPECT_EQ((*message)->fields().open().SerializeAsString(), expected.open().SerializeAsString());
    EXPECT_EQ((*message)->fields().has_open(), expected.has_open());
    EXPECT_EQ(Joined(**message), expected.data());
    EXPECT_EQ((*message)->data_size(), expected.data().size());
  }
  auto padded = PushMessage::Decode(Sliced(padded_length, 3));
  ASSERT_TRUE(padded.ok());
  EXPECT_TRUE((*padded)->in_place());
}

TEST(PushMessage, BytesThatAreNoShardChunkAreInvalidArgument) {
  // A length past the end; a truncated varint; a wire type protobuf rejects.
  for (const std::string& wire : {std::string("\x12\x10short", 7), std::string("\x12\x80", 2), std::string("\x17", 1)}) {
    auto message = PushMessage::Decode(Sliced(wire, 1));
    ASSERT_FALSE(message.ok());
    EXPECT_EQ(message.status().code(), absl::StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace weightd
