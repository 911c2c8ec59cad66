#include "client/weightctl/shard_push.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/unique_fd.h"
#include "client/cpp/channel.h"
#include "grpcpp/client_context.h"
#include "weightd/v1/loader.grpc.pb.h"

namespace weightd::ctl {

constexpr size_t kChunkBytes = 4 << 20;

absl::StatusOr<v1::PushSummary> PushShardFile(const std::string& address, const std::string& model_id,
                                              const std::string& file_path, const std::string& shard_name) {
  UniqueFd fd(::open(file_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return absl::NotFoundError(absl::StrCat("cannot open ", file_path, ": ", std::strerror(errno)));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return absl::InternalError(absl::StrCat("fstat ", file_path));

  auto stub = v1::Loader::NewStub(client::MakeChannel(address, /*own_connection=*/true));
  grpc::ClientContext context;
  v1::PushSummary summary;
  // Name the shard before the first message (services/server/push_framing.h).
  context.AddMetadata("weightd-model-id", model_id);
  context.AddMetadata("weightd-shard-file", shard_name);
  std::unique_ptr<grpc::ClientWriter<v1::ShardChunk>> writer = stub->PushShards(&context, &summary);

  v1::ShardChunk chunk;
  v1::ShardOpen* open = chunk.mutable_open();
  open->set_model_id(model_id);
  open->set_shard_file(shard_name);
  open->set_size(static_cast<uint64_t>(st.st_size));
  bool writing = writer->Write(chunk);
  chunk.clear_open();
  std::string* data = chunk.mutable_data();
  absl::Status read_error;
  while (writing) {
    data->resize(kChunkBytes);
    ssize_t n = ::read(fd.get(), data->data(), kChunkBytes);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      read_error = absl::InternalError(absl::StrCat("read ", file_path, ": ", std::strerror(errno)));
      context.TryCancel();
      break;
    }
    if (n == 0) break;
    data->resize(static_cast<size_t>(n));
    writing = writer->Write(chunk);
  }
  writer->WritesDone();
  absl::Status status = client::FromGrpc(writer->Finish());
  if (!read_error.ok()) return read_error;
  if (!status.ok()) return status;
  return summary;
}

}  // namespace weightd::ctl
