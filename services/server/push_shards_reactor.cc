#include "services/server/push_shards_reactor.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/escaping.h"
#include "base/status_macros.h"
#include "services/server/grpc_status.h"
#include "services/server/push_framing.h"

namespace weightd {
namespace {

std::string Hex(const unsigned char* bytes, size_t n) {
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(bytes), n));
}

}  // namespace

PushShardsReactor::PushShardsReactor(Registry& registry, Executor& executor, SourceHooks hooks,
                                     safetensors::ParseLimits limits, v1::PushSummary* summary)
    : registry_(registry), executor_(executor), hooks_(std::move(hooks)), limits_(limits), summary_(summary) {
  StartRead(&chunk_);
}

PushShardsReactor::~PushShardsReactor() {
  if (sha_ != nullptr) EVP_MD_CTX_free(sha_);
}

void PushShardsReactor::OnReadDone(bool ok) {
  if (!ok) {
    // The client closed its side or went away: either way no more bytes come.
    executor_.Post([this] {
      absl::Status status = EndOfStream();
      status.ok() ? Succeed() : Fail(status);
    });
    return;
  }
  executor_.Post([this] {
    absl::StatusOr<bool> next = Consume();
    if (!next.ok()) {
      Fail(next.status());
    } else if (*next) {
      StartRead(&chunk_);
    }
  });
}

absl::StatusOr<bool> PushShardsReactor::Consume() {
  std::string data = std::move(*chunk_.mutable_data());
  WEIGHTD_RETURN_IF_ERROR(CheckShardChunk(chunk_, parser_ == nullptr, file_));
  if (parser_ == nullptr) WEIGHTD_RETURN_IF_ERROR(Open(chunk_.open()));
  if (hooks_.received) hooks_.received(data.size());
  summary_->set_bytes_received(summary_->bytes_received() + data.size());
  if (sha_ != nullptr) EVP_DigestUpdate(sha_, data.data(), data.size());

  if (!parser_->header_complete()) {
    WEIGHTD_ASSIGN_OR_RETURN(size_t used, parser_->FeedHeader(data));
    if (!parser_->header_complete()) return true;
    leftover_ = data.substr(used);
    job_->OnShardHeader(file_, parser_->header(), [this](absl::Status status) {
      executor_.Post([this, status] { OnResume(status); });
    });
    return false;  // reading resumes once the plan exists
  }
  WEIGHTD_RETURN_IF_ERROR(FeedData(data));
  return true;
}

absl::Status PushShardsReactor::Open(const v1::ShardOpen& open) {
  file_ = open.shard_file();
  WEIGHTD_ASSIGN_OR_RETURN(job_, registry_.LoadingJob(open.model_id()));
  if (!job_->ExpectsShard(file_)) {
    std::shared_ptr<LoadJob> stranger = std::move(job_);
    return absl::InvalidArgumentError(absl::StrCat("model '", open.model_id(),
                                                   "' expects no shard named '", file_, "'"));
  }
  if (!open.sha256().empty()) {
    expected_sha256_ = open.sha256();
    sha_ = EVP_MD_CTX_new();
    EVP_DigestInit_ex(sha_, EVP_sha256(), nullptr);
  }
  std::optional<uint64_t> size;
  if (open.size() > 0) size = open.size();
  parser_ = std::make_unique<safetensors::ShardParser>(file_, limits_, size);
  return absl::OkStatus();
}

void PushShardsReactor::OnResume(absl::Status status) {
  if (!status.ok()) {
    Fail(status);
    return;
  }
  writer_ = job_->Writer(file_);
  if (writer_ == nullptr) {
    Fail(job_->failed() ? job_->status() : absl::InternalError("no writer for shard"));
    return;
  }
  absl::Status fed = FeedData(leftover_);
  std::string().swap(leftover_);
  if (!fed.ok()) {
    Fail(fed);
    return;
  }
  StartRead(&chunk_);
}

absl::Status PushShardsReactor::FeedData(std::string_view bytes) {
  if (job_->failed()) return job_->status();
  WEIGHTD_RETURN_IF_ERROR(parser_->FeedData(bytes, *writer_));
  registry_.MaybeReportProgress(job_->model_id());
  return absl::OkStatus();
}

absl::Status PushShardsReactor::EndOfStream() {
  if (parser_ == nullptr) {
    return absl::InvalidArgumentError("PushShards stream ended before `open`");
  }
  if (writer_ == nullptr) {
    // Cut inside the header, or while waiting for the plan: the shard never arrives.
    if (!parser_->header_complete()) {
      return absl::DataLossError(absl::StrCat("shard '", file_, "': stream ended inside the header at byte ",
                                              parser_->position()));
    }
    return absl::DataLossError(absl::StrCat("shard '", file_, "': stream ended before the load was planned"));
  }
  WEIGHTD_RETURN_IF_ERROR(parser_->Finish(*writer_));
  if (sha_ != nullptr) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(sha_, digest, &len);
    std::string got = Hex(digest, len);
    summary_->set_sha256(got);
    if (got != expected_sha256_) {
      return absl::DataLossError(absl::StrCat("shard '", file_, "': sha256 mismatch: expected ",
                                              expected_sha256_, ", received ", got));
    }
  }
  summary_->set_tensors(static_cast<uint32_t>(parser_->header().tensors.size()));
  return absl::OkStatus();
}

void PushShardsReactor::Fail(const absl::Status& status) {
  if (finished_) return;
  finished_ = true;
  if (job_ != nullptr) {
    if (writer_ != nullptr) {
      job_->OnShardDone(file_, status);
      writer_ = nullptr;
    } else if (status.code() != absl::StatusCode::kAlreadyExists && job_->ExpectsShard(file_)) {
      job_->Fail(status);
    }
  }
  // The load's own error explains a stream cut short because of another shard.
  absl::Status reply = (job_ != nullptr && job_->failed()) ? job_->status() : status;
  if (status.code() == absl::StatusCode::kAlreadyExists) reply = status;
  Finish(ToGrpcStatus(reply));  // nothing touches `this` after this
}

void PushShardsReactor::Succeed() {
  if (finished_) return;
  finished_ = true;
  job_->OnShardDone(file_, absl::OkStatus());
  writer_ = nullptr;
  registry_.MaybeReportProgress(job_->model_id());
  Finish(grpc::Status::OK);
}

void PushShardsReactor::OnDone() { delete this; }

}  // namespace weightd
