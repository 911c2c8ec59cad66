// libFuzzer target for the raw push protocol's two parsers (base/raw_push_wire.h).
// The input is what a client sends after the magic, written into a socket pair
// and half-closed: PushFrameReader must give back exactly the frames the input
// holds (each frame's length and bytes, in order), end only at a zero length,
// and otherwise fail with DATA_LOSS (cut short, naming where) or RESOURCE_EXHAUSTED
// (over its 1 KiB limit, naming the frame's first byte); each frame goes through
// PushMessage::Decode as the daemon would. The same input as a reply must decode
// only when it re-encodes to itself.
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/raw_push_wire.h"
#include "base/unique_fd.h"
#include "services/server/push_frame_reader.h"
#include "services/server/push_message.h"

namespace {

constexpr uint32_t kLimit = 1024;

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "raw_push_fuzz: %s\n", what);
    std::abort();
  }
}

void FuzzFrames(const std::string& input) {
  int pair[2];
  Check(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0, "socketpair");
  weightd::UniqueFd reader_end(pair[0]), writer_end(pair[1]);
  // MAX_LEN (8 KiB) fits a socket buffer: written whole before reading.
  Check(::send(writer_end.get(), input.data(), input.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(input.size()),
        "send");
  ::shutdown(writer_end.get(), SHUT_WR);
  weightd::PushFrameReader reader(reader_end.get(), kLimit);
  size_t at = 0;
  for (;;) {
    const size_t start = at;
    absl::StatusOr<std::optional<grpc::Slice>> frame = reader.Next();
    if (!frame.ok()) {
      const absl::StatusCode code = frame.status().code();
      Check(code == absl::StatusCode::kDataLoss || code == absl::StatusCode::kResourceExhausted, "error code");
      // Named: where the connection ended (DATA_LOSS), or where the refused frame starts.
      const uint64_t named = code == absl::StatusCode::kDataLoss ? reader.offset() : start;
      Check(frame.status().message().find("at byte " + std::to_string(named)) != std::string::npos,
            "error names the byte");
      if (code == absl::StatusCode::kResourceExhausted) {
        Check(input.size() - start >= 4, "over the limit without a length");
        const uint32_t length = weightd::ReadLength(reinterpret_cast<const unsigned char*>(input.data() + start));
        Check(length > kLimit, "refused a frame within the limit");
      } else {
        Check(reader.offset() == input.size(), "cut short before the input's end");
      }
      return;
    }
    Check(input.size() - start >= 4, "a frame without a whole length");
    const uint32_t length = weightd::ReadLength(reinterpret_cast<const unsigned char*>(input.data() + start));
    if (!frame->has_value()) {
      Check(length == 0, "ended at a non-zero length");
      Check(reader.offset() == start + 4, "offset after the end frame");
      return;
    }
    const grpc::Slice& slice = **frame;
    Check(length > 0 && slice.size() == length, "frame length");
    Check(std::string(reinterpret_cast<const char*>(slice.begin()), slice.size()) == input.substr(start + 4, length),
          "frame bytes");
    at = start + 4 + length;
    Check(reader.offset() == at, "offset after a frame");
    std::vector<grpc::Slice> slices = {slice};
    auto message = weightd::PushMessage::Decode(std::move(slices));
    if (!message.ok()) Check(message.status().code() == absl::StatusCode::kInvalidArgument, "decode code");
  }
}

void FuzzReply(const std::string& input) {
  absl::StatusOr<weightd::RawPushReply> reply = weightd::DecodeRawPushReply(input);
  if (!reply.ok()) {
    Check(reply.status().code() == absl::StatusCode::kInvalidArgument, "reply error code");
    return;
  }
  Check(weightd::EncodeRawPushReply(*reply) == input, "a decoded reply re-encodes to itself");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  FuzzFrames(input);
  FuzzReply(input);
  return 0;
}
