#include "base/raw_push_wire.h"

#include <algorithm>

namespace weightd {

void AppendLength(uint32_t length, std::string& out) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((length >> (8 * i)) & 0xff));
}

uint32_t ReadLength(const unsigned char bytes[kRawPushLengthBytes]) {
  return uint32_t{bytes[0]} | uint32_t{bytes[1]} << 8 | uint32_t{bytes[2]} << 16 | uint32_t{bytes[3]} << 24;
}

std::string EncodeRawPushReply(const RawPushReply& reply) {
  const size_t used = 8 + reply.summary.size();
  const size_t room = used >= kMaxRawPushReplyBytes ? 0 : kMaxRawPushReplyBytes - used;
  const std::string_view message = std::string_view(reply.message).substr(0, std::min(room, reply.message.size()));
  std::string out;
  AppendLength(static_cast<uint32_t>(reply.code), out);
  AppendLength(static_cast<uint32_t>(message.size()), out);
  out.append(message);
  out.append(reply.summary);
  return out;
}

absl::StatusOr<RawPushReply> DecodeRawPushReply(std::string_view bytes) {
  if (bytes.size() < 8 || bytes.size() > kMaxRawPushReplyBytes) {
    return absl::InvalidArgumentError("raw push reply of " + std::to_string(bytes.size()) + " bytes");
  }
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  RawPushReply reply;
  const uint32_t code = ReadLength(p);
  const uint32_t message = ReadLength(p + 4);
  if (code > 16) return absl::InvalidArgumentError("raw push reply with status code " + std::to_string(code));
  if (message > bytes.size() - 8) return absl::InvalidArgumentError("raw push reply's message overruns it");
  reply.code = static_cast<int>(code);
  reply.message = std::string(bytes.substr(8, message));
  reply.summary = std::string(bytes.substr(8 + message));
  return reply;
}

}  // namespace weightd
