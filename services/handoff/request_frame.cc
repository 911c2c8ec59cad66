#include "services/handoff/request_frame.h"

#include "absl/strings/str_cat.h"

namespace weightd::handoff {

uint32_t RequestFrameDecoder::length() const {
  const auto* h = reinterpret_cast<const unsigned char*>(buffer_.data());
  return uint32_t{h[0]} | uint32_t{h[1]} << 8 | uint32_t{h[2]} << 16 | uint32_t{h[3]} << 24;
}

size_t RequestFrameDecoder::wanted() const {
  if (!length_known()) return 4 - buffer_.size();
  size_t total = 4 + static_cast<size_t>(length());
  return buffer_.size() < total ? total - buffer_.size() : 0;
}

absl::Status RequestFrameDecoder::Append(std::string_view bytes) {
  if (bytes.size() > wanted()) {
    return absl::InternalError(absl::StrCat("request frame: ", bytes.size(), " bytes appended, ", wanted(), " wanted"));
  }
  bool had_length = length_known();
  buffer_.append(bytes);
  if (!had_length && length_known() && length() > kMaxRequestBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("request frame length ", length(), " exceeds the limit of ", kMaxRequestBytes));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::AttachRequest> RequestFrameDecoder::Parse() const {
  if (!complete()) return absl::InternalError("request frame is not complete");
  v1::AttachRequest request;
  if (!request.ParseFromArray(buffer_.data() + 4, static_cast<int>(buffer_.size() - 4))) {
    return absl::InvalidArgumentError("malformed AttachRequest");
  }
  if (request.model_id().empty()) return absl::InvalidArgumentError("AttachRequest.model_id is empty");
  if (request.model_id().size() > kMaxModelIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat("AttachRequest.model_id is ", request.model_id().size(),
                                                   " bytes, the limit is ", kMaxModelIdBytes));
  }
  return request;
}

}  // namespace weightd::handoff
