#include "services/safetensors/writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "services/safetensors/header.h"

namespace weightd::safetensors {
namespace {

// JSON string escaping that leaves every other byte as it is: invalid UTF-8 must
// reach the validator in Create, not be silently replaced.
void AppendJsonString(std::string& out, std::string_view s) {
  out.push_back('"');
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20) {
      absl::StrAppendFormat(&out, "\\u%04x", static_cast<unsigned char>(c));
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
}

uint64_t SpecBytes(const TensorSpec& t) {
  uint64_t n = kernels::DTypeSize(t.dtype);
  for (int64_t d : t.shape) n *= static_cast<uint64_t>(d);
  return n;
}

}  // namespace

std::string BuildHeaderJson(const std::vector<TensorSpec>& tensors,
                            const std::vector<std::pair<std::string, std::string>>& metadata) {
  std::string json = "{";
  if (!metadata.empty()) {
    json += "\"__metadata__\":{";
    for (size_t i = 0; i < metadata.size(); ++i) {
      if (i > 0) json += ',';
      AppendJsonString(json, metadata[i].first);
      json += ':';
      AppendJsonString(json, metadata[i].second);
    }
    json += '}';
  }
  uint64_t offset = 0;
  for (const TensorSpec& t : tensors) {
    if (json.size() > 1) json += ',';
    AppendJsonString(json, t.name);
    uint64_t end = offset + SpecBytes(t);
    absl::StrAppend(&json, ":{\"dtype\":\"", std::string(kernels::DTypeName(t.dtype)), "\",\"shape\":[",
                    absl::StrJoin(t.shape, ","), "],\"data_offsets\":[", offset, ",", end, "]}");
    offset = end;
  }
  json += '}';
  json.append((8 - json.size() % 8) % 8, ' ');
  return json;
}

SafetensorsWriter::SafetensorsWriter(std::string path, UniqueFd fd, uint64_t data_size)
    : path_(std::move(path)), fd_(std::move(fd)), data_size_(data_size) {}

SafetensorsWriter::~SafetensorsWriter() = default;

absl::StatusOr<std::unique_ptr<SafetensorsWriter>> SafetensorsWriter::Create(
    const std::string& path, std::vector<TensorSpec> tensors,
    std::vector<std::pair<std::string, std::string>> metadata) {
  std::string json = BuildHeaderJson(tensors, metadata);
  // The parser is the one definition of a valid header; a file this writer
  // produces must load.
  absl::StatusOr<ShardHeader> header = ParseShardHeaderJson(path, json, ParseLimits{});
  if (!header.ok()) return header.status();
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, absl::StrCat("cannot create '", path, "'"));
  std::unique_ptr<SafetensorsWriter> writer(new SafetensorsWriter(path, std::move(fd), header->data_size));
  std::string prefix(8, '\0');
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<char>((json.size() >> (8 * i)) & 0xFF);
  absl::Status status = writer->WriteAll(prefix + json);
  if (!status.ok()) return status;
  return writer;
}

absl::Status SafetensorsWriter::WriteAll(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd_.get(), bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::ErrnoToStatus(errno, absl::StrCat("cannot write '", path_, "'"));
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Append(std::string_view bytes) {
  if (!fd_.valid()) {
    return absl::FailedPreconditionError(absl::StrCat("'", path_, "': Append after Close"));
  }
  if (bytes.size() > data_size_ - appended_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", path_, "': Append of ", bytes.size(), " bytes goes past the end of the data section (",
        appended_, " of ", data_size_, " bytes appended)"));
  }
  absl::Status status = WriteAll(bytes);
  if (!status.ok()) return status;
  appended_ += bytes.size();
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Close() {
  if (!fd_.valid()) return absl::FailedPreconditionError(absl::StrCat("'", path_, "': Close called twice"));
  int fd = fd_.release();
  if (::close(fd) != 0) return absl::ErrnoToStatus(errno, absl::StrCat("cannot close '", path_, "'"));
  if (appended_ != data_size_) {
    return absl::FailedPreconditionError(absl::StrCat("'", path_, "': closed after ", appended_, " of ",
                                                      data_size_, " data bytes"));
  }
  return absl::OkStatus();
}

}  // namespace weightd::safetensors
