#include "services/safetensors/parser.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/numeric/int128.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace weightd::safetensors {
namespace {

constexpr uint64_t kLengthPrefixBytes = 8;
// The header buffer grows as bytes arrive beyond this, so a stream that declares a
// large header and then stalls costs only what it sent.
constexpr uint64_t kInitialHeaderReserve = 1 << 20;

uint64_t LoadLittleEndian64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

// Where the header ends in the file, exact for any length a caller's limits allow.
std::string HeaderEnd(uint64_t header_length) {
  return absl::StrFormat("%d", absl::uint128(header_length) + kLengthPrefixBytes);
}

std::string Quote(const std::string& text) {
  return absl::StrCat("'", absl::Utf8SafeCEscape(text), "'");
}

}  // namespace

ShardParser::ShardParser(std::string shard_name, ParseLimits limits,
                         std::optional<uint64_t> declared_size)
    : shard_name_(std::move(shard_name)), limits_(limits), declared_size_(declared_size) {}

std::string ShardParser::Where() const { return absl::StrCat("shard ", Quote(shard_name_)); }

absl::Status ShardParser::Fail(absl::Status status) {
  error_ = status;
  return status;
}

absl::StatusOr<size_t> ShardParser::FeedHeader(std::string_view bytes) {
  if (!error_.ok()) return error_;
  if (header_complete_) return 0;
  if (finished_) return absl::FailedPreconditionError(absl::StrCat(Where(), ": FeedHeader after Finish"));
  size_t used = 0;
  if (position_ < kLengthPrefixBytes) {
    if (declared_size_ && *declared_size_ < kLengthPrefixBytes) {
      return Fail(absl::InvalidArgumentError(absl::StrCat(
          Where(), ": file size ", *declared_size_, " is smaller than the 8-byte header length")));
    }
    size_t n = std::min<uint64_t>(kLengthPrefixBytes - position_, bytes.size());
    std::memcpy(length_prefix_ + position_, bytes.data(), n);
    used += n;
    position_ += n;
    if (position_ < kLengthPrefixBytes) return used;
    header_length_ = LoadLittleEndian64(length_prefix_);
    if (header_length_ > limits_.max_header_bytes) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat(Where(), ": header length ", header_length_, " exceeds the limit of ",
                       limits_.max_header_bytes, " bytes")));
    }
    if (declared_size_ && header_length_ > *declared_size_ - kLengthPrefixBytes) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat(Where(), ": header length ", header_length_, " beyond the file size ",
                       *declared_size_, " (the header would end at file byte offset ",
                       HeaderEnd(header_length_), ")")));
    }
    json_.reserve(std::min(header_length_, kInitialHeaderReserve));
  }
  size_t n = std::min<uint64_t>(header_length_ - json_.size(), bytes.size() - used);
  json_.append(bytes.data() + used, n);
  used += n;
  position_ += n;
  if (json_.size() == header_length_) {
    absl::Status status = CompleteHeader();
    if (!status.ok()) return Fail(std::move(status));
  }
  return used;
}

absl::Status ShardParser::CompleteHeader() {
  absl::StatusOr<ShardHeader> header = ParseShardHeaderJson(shard_name_, json_, limits_);
  std::string().swap(json_);
  if (!header.ok()) return header.status();
  if (declared_size_ && header->file_size() != *declared_size_) {
    // A file shorter than its valid header says was cut off (DATA_LOSS); a longer
    // one carries bytes no tensor owns (INVALID_ARGUMENT).
    absl::StatusCode code = header->file_size() > *declared_size_ ? absl::StatusCode::kDataLoss
                                                                  : absl::StatusCode::kInvalidArgument;
    return absl::Status(code, absl::StrCat(
        Where(), ": the header describes a file of ", header->file_size(), " bytes (8 + header ",
        header->header_size, " + data ", header->data_size, ") but the file is ", *declared_size_,
        " bytes"));
  }
  header_ = *std::move(header);
  header_complete_ = true;
  return absl::OkStatus();
}

absl::Status ShardParser::CompleteDelivered(TensorSink& sink) {
  while (next_tensor_ < header_.tensors.size() && header_.tensors[next_tensor_].end == data_position_) {
    absl::Status status = sink.OnTensorComplete(next_tensor_);
    if (!status.ok()) return Fail(std::move(status));
    ++next_tensor_;
  }
  return absl::OkStatus();
}

absl::Status ShardParser::FeedData(std::string_view bytes, TensorSink& sink) {
  if (!error_.ok()) return error_;
  if (finished_) return absl::FailedPreconditionError(absl::StrCat(Where(), ": FeedData after Finish"));
  if (!header_complete_) {
    return absl::FailedPreconditionError(
        absl::StrCat(Where(), ": FeedData before the header is complete"));
  }
  if (bytes.size() > header_.data_size - data_position_) {
    uint64_t extra = bytes.size() - (header_.data_size - data_position_);
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        Where(), ": ", extra, " bytes after the last tensor at file byte offset ", header_.file_size(),
        " (the header declares ", header_.data_size, " data bytes)")));
  }
  if (absl::Status status = CompleteDelivered(sink); !status.ok()) return status;
  while (!bytes.empty()) {
    // The tensors tile the data section, so the next one owns data_position_.
    const TensorHeader& t = header_.tensors[next_tensor_];
    size_t n = std::min<uint64_t>(t.end - data_position_, bytes.size());
    absl::Status status = sink.OnTensorBytes(next_tensor_, data_position_ - t.begin, bytes.substr(0, n));
    if (!status.ok()) return Fail(std::move(status));
    bytes.remove_prefix(n);
    data_position_ += n;
    position_ += n;
    if (status = CompleteDelivered(sink); !status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::Status ShardParser::Finish(TensorSink& sink) {
  if (!error_.ok()) return error_;
  if (finished_) return absl::FailedPreconditionError(absl::StrCat(Where(), ": Finish called twice"));
  finished_ = true;
  if (!header_complete_) {
    if (position_ < kLengthPrefixBytes) {
      return Fail(absl::DataLossError(absl::StrCat(Where(), ": stream ended at file byte offset ",
                                                   position_, ", inside the 8-byte header length")));
    }
    return Fail(absl::DataLossError(absl::StrCat(
        Where(), ": stream ended at file byte offset ", position_, ", inside the header (", header_length_,
        " bytes, ending at file byte offset ", HeaderEnd(header_length_), ")")));
  }
  if (absl::Status status = CompleteDelivered(sink); !status.ok()) return status;
  if (data_position_ < header_.data_size) {
    const TensorHeader& t = header_.tensors[next_tensor_];
    return Fail(absl::DataLossError(absl::StrCat(
        Where(), ": tensor ", Quote(t.name), ": stream ended at file byte offset ", position_, " after ",
        data_position_ - t.begin, " of the tensor's ", t.size(), " bytes (the file should be ",
        header_.file_size(), " bytes)")));
  }
  return absl::OkStatus();
}

}  // namespace weightd::safetensors
