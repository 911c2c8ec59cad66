#include "client/weightctl/shard_push.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "base/unique_fd.h"
#include "client/cpp/channel.h"
#include "client/cpp/shard_stream.h"

namespace weightd::ctl {

constexpr size_t kChunkBytes = 4 << 20;

absl::StatusOr<v1::PushSummary> PushShardFile(const std::string& address, const client::TlsOptions& tls,
                                              const std::string& model_id, const std::string& file_path,
                                              const std::string& shard_name, client::PushTransport transport) {
  UniqueFd fd(::open(file_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return absl::NotFoundError(absl::StrCat("cannot open ", file_path, ": ", std::strerror(errno)));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return absl::InternalError(absl::StrCat("fstat ", file_path));

  WEIGHTD_ASSIGN_OR_RETURN(std::unique_ptr<client::ShardStream> stream,
                           client::OpenShardStream(address, tls, model_id, shard_name,
                                                   static_cast<uint64_t>(st.st_size), transport));
  absl::Status read_error;
  // Each message's bytes are read straight into the buffer that is sent.
  auto read = [&](uint8_t* buffer, size_t capacity) -> size_t {
    for (;;) {
      ssize_t n = ::read(fd.get(), buffer, capacity);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) read_error = absl::InternalError(absl::StrCat("read ", file_path, ": ", std::strerror(errno)));
      return n < 0 ? 0 : static_cast<size_t>(n);
    }
  };
  while (stream->Send(kChunkBytes, read)) {
  }
  if (!read_error.ok()) stream->Cancel();
  absl::StatusOr<v1::PushSummary> summary = stream->Finish();
  if (!read_error.ok()) return read_error;
  return summary;
}

}  // namespace weightd::ctl
