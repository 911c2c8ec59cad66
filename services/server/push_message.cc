#include "services/server/push_message.h"

#include <string>

#include "absl/status/status.h"

namespace weightd {
namespace {

constexpr uint8_t kDataTag = 0x12;  // field 2, length-delimited
// Protobuf reads a length as at most five varint bytes, below 2^31.
constexpr int kMaxLengthBytes = 5;

std::string_view View(const grpc::Slice& slice) {
  return {reinterpret_cast<const char*>(slice.begin()), slice.size()};
}

}  // namespace

absl::StatusOr<std::unique_ptr<PushMessage>> PushMessage::Decode(grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return absl::InvalidArgumentError("unreadable PushShards message");
  return Decode(std::move(slices));
}

absl::StatusOr<std::unique_ptr<PushMessage>> PushMessage::Decode(std::vector<grpc::Slice> slices) {
  std::unique_ptr<PushMessage> message(new PushMessage());
  message->slices_ = std::move(slices);
  if (message->ReadInPlace()) return message;
  // Anything else: protobuf's own parse, from one copy of the bytes.
  std::string bytes;
  for (const grpc::Slice& slice : message->slices_) bytes.append(View(slice));
  message->slices_.clear();
  if (!message->fields_.ParseFromString(bytes)) {
    return absl::InvalidArgumentError("a PushShards message is not a valid ShardChunk");
  }
  message->data_size_ = message->fields_.data().size();
  if (message->data_size_ > 0) message->pieces_.push_back(message->fields_.data());
  return message;
}

bool PushMessage::ReadInPlace() {
  uint64_t total = 0;
  for (const grpc::Slice& slice : slices_) total += slice.size();
  // The tag and the length varint, which may straddle slices.
  size_t slice = 0, at = 0, header = 0;
  auto next_byte = [&](uint8_t& byte) {
    while (slice < slices_.size() && at == slices_[slice].size()) {
      ++slice;
      at = 0;
    }
    if (slice == slices_.size()) return false;
    byte = slices_[slice].begin()[at++];
    ++header;
    return true;
  };
  uint8_t byte = 0;
  if (!next_byte(byte) || byte != kDataTag) return false;
  uint64_t length = 0;
  for (int i = 0;; ++i) {
    if (i == kMaxLengthBytes || !next_byte(byte)) return false;
    if (i == kMaxLengthBytes - 1 && byte >= 8) return false;  // 2^31 or more: protobuf's to refuse
    length |= static_cast<uint64_t>(byte & 0x7F) << (7 * i);
    if ((byte & 0x80) == 0) break;
  }
  // Exactly the one field: protobuf would read the same bytes as `data`.
  if (length != total - header) return false;
  for (; slice < slices_.size(); ++slice, at = 0) {
    std::string_view rest = View(slices_[slice]).substr(at);
    if (!rest.empty()) pieces_.push_back(rest);
  }
  data_size_ = length;
  in_place_ = true;
  return true;
}

}  // namespace weightd
