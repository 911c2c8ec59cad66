#include "client/weightctl/shard_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "services/safetensors/parser.h"

namespace weightd::ctl {
namespace {

absl::Status PreadAll(int fd, uint64_t offset, uint64_t size, void* out, const std::string& name) {
  auto* dst = static_cast<char*>(out);
  while (size > 0) {
    const ssize_t n = ::pread(fd, dst, size, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::InternalError(absl::StrCat("read ", name, ": ", std::strerror(errno)));
    if (n == 0) return absl::DataLossError(absl::StrCat(name, ": file ends at byte ", offset));
    dst += n;
    offset += static_cast<uint64_t>(n);
    size -= static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ShardReader> ShardReader::Open(const std::string& path, const std::string& name) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return absl::NotFoundError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return absl::InternalError(absl::StrCat("fstat ", path, ": ", std::strerror(errno)));
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  ShardReader reader(name, std::move(fd));

  // The 8-byte length, then exactly the header; the parser checks both against the file size.
  safetensors::ShardParser parser(name, safetensors::ParseLimits(), file_size);
  std::string prefix(8, '\0');
  if (file_size < 8) return absl::DataLossError(absl::StrCat(name, ": ", file_size, " bytes, shorter than a header"));
  WEIGHTD_RETURN_IF_ERROR(PreadAll(reader.fd_.get(), 0, 8, prefix.data(), name));
  WEIGHTD_RETURN_IF_ERROR(parser.FeedHeader(prefix).status());
  uint64_t header_size = 0;
  std::memcpy(&header_size, prefix.data(), 8);
  std::string header(header_size, '\0');
  WEIGHTD_RETURN_IF_ERROR(PreadAll(reader.fd_.get(), 8, header_size, header.data(), name));
  WEIGHTD_RETURN_IF_ERROR(parser.FeedHeader(header).status());
  if (!parser.header_complete()) return absl::DataLossError(absl::StrCat(name, ": truncated header"));
  reader.header_ = parser.header();
  if (reader.header_.file_size() != file_size) {
    return absl::DataLossError(
        absl::StrCat(name, ": header declares ", reader.header_.file_size(), " bytes, file has ", file_size));
  }
  return reader;
}

absl::Status ShardReader::Read(const safetensors::TensorHeader& t, uint64_t offset, uint64_t size, void* out) const {
  return PreadAll(fd_.get(), header_.data_start() + t.begin + offset, size, out, name_);
}

}  // namespace weightd::ctl
