#include "services/server/push_shards_reactor.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/escaping.h"
#include "base/status_macros.h"
#include "services/device/gpu_waits.h"
#include "services/server/grpc_status.h"
#include "services/server/push_framing.h"
#include "services/server/reactor_order.h"

namespace weightd {
namespace {

std::string Hex(const unsigned char* bytes, size_t n) {
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(bytes), n));
}

}  // namespace

template <class Transport>
PushShardsReactor<Transport>::PushShardsReactor(Registry& registry, Executor& executor, Executor* placement, HostBudget* budget,
                                     SourceHooks hooks,
                                     safetensors::ParseLimits limits, PushPinning* pinning,
                                     grpc::ByteBuffer* response,
                                     std::string named_model, std::string named_file)
    : registry_(registry),
      executor_(executor),
      placement_(placement),
      budget_(budget),
      hooks_(std::move(hooks)),
      limits_(limits),
      pinning_(pinning),
      counted_(pinning),
      response_(ResponseOf(*this, response)),
      named_model_(std::move(named_model)),
      named_file_(std::move(named_file)) {
  std::lock_guard<std::mutex> lock(mu_);
  reading_ = true;
  reactor_order::Release(this);
  this->StartRead(&incoming_);
}

template <class Transport>
PushShardsReactor<Transport>::~PushShardsReactor() {
  if (sha_ != nullptr) EVP_MD_CTX_free(sha_);
}

template <class Transport>
bool PushShardsReactor<Transport>::TakeReadSlot() {
  if (reading_ || ended_ || finished_ || held_ >= kMaxHeldChunks) return false;
  // Reading ahead waits while host memory is short; a stream holding no message
  // may always read one (services/load/host_budget.h).
  if (held_ > 0 && budget_ != nullptr && !budget_->MayReadAhead()) return false;
  reading_ = true;
  return true;
}

// gRPC runs reactions off the thread that starts an operation, so StartRead may
// be called under `mu_`; doing so orders every StartRead before Finish.
template <class Transport>
void PushShardsReactor<Transport>::OnReadDone(bool ok) {
  reactor_order::Reaction reaction(this);
  bool post = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    reading_ = false;
    heard_ = true;
    if (finished_) return;  // a read that Finish cut short, or a message nobody will process
    if (ok) {
      if (budget_ != nullptr) budget_->ChargeMessage(incoming_.Length());
      queue_.emplace_back();
      queue_.back().Swap(&incoming_);
      ++held_;
      if (TakeReadSlot()) {
        reactor_order::Release(this);
        this->StartRead(&incoming_);
      }
    } else {
      ended_ = true;  // the client closed its side or went away: no more bytes come
    }
    if (!draining_) post = draining_ = true;
  }
  if (post) executor_.Post([this] { Drain(); });
}

template <class Transport>
void PushShardsReactor<Transport>::Drain() {
  SleepOnGpuWaits sleep;  // a thread the push's streams share: its GPU waits leave the core (gpu_waits.h)
  for (;;) {
    if (feeding_) {
      absl::StatusOr<bool> fed = FeedPending();
      if (!fed.ok()) {
        Fail(fed.status());
        return;
      }
      if (!*fed) {
        std::lock_guard<std::mutex> lock(mu_);
        if (!admitted_early_) {
          paused_ = true;  // OnAdmitted runs the drain again
          return;
        }
        admitted_early_ = false;
        continue;
      }
      DoneFeeding();
      continue;
    }
    grpc::ByteBuffer message;
    bool end = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!queue_.empty()) {
        message.Swap(&queue_.front());
        queue_.pop_front();
      } else if (ended_) {
        end = true;  // the end of the stream, after every message before it
      } else {
        draining_ = false;
        return;
      }
    }
    if (end) {
      absl::Status status = EndOfStream();
      status.ok() ? Succeed() : Fail(status);
      return;
    }
    absl::StatusOr<bool> next = Consume(std::move(message));
    if (!next.ok()) {
      Fail(next.status());
      return;
    }
    if (!*next) {
      AwaitPlan();
      return;
    }
  }
}

template <class Transport>
void PushShardsReactor<Transport>::OnAdmitted() {
  bool post = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (paused_) {
      paused_ = false;
      post = true;
    } else {
      admitted_early_ = true;  // the drain has not paused yet: it goes on by itself
    }
  }
  if (post) executor_.Post([this] { Drain(); });
}

template <class Transport>
void PushShardsReactor<Transport>::Recycle() {
  std::lock_guard<std::mutex> lock(mu_);
  --held_;
  if (TakeReadSlot()) {
    reactor_order::Release(this);
    this->StartRead(&incoming_);
  }
}

// The last touch of `this` in its drain task: the plan may exist at once, and
// OnResume then runs the drain on another thread.
template <class Transport>
void PushShardsReactor<Transport>::AwaitPlan() {
  job_->OnShardHeader(file_, parser_->header(), [this](absl::Status status) {
    executor_.Post([this, status] { OnResume(status); });
  });
}

template <class Transport>
absl::StatusOr<bool> PushShardsReactor<Transport>::Consume(grpc::ByteBuffer buffer) {
  charged_ += buffer.Length();  // charged on arrival; given back once fed (or by Fail)
  absl::StatusOr<std::unique_ptr<PushMessage>> decoded = PushMessage::Decode(buffer);
  buffer.Clear();
  if (!decoded.ok()) {
    if (parser_ == nullptr) return decoded.status();
    return absl::InvalidArgumentError(absl::StrCat("shard '", file_, "': ", decoded.status().message()));
  }
  current_ = *std::move(decoded);
  WEIGHTD_RETURN_IF_ERROR(CheckShardChunk(current_->fields(), parser_ == nullptr, file_));
  if (parser_ == nullptr) WEIGHTD_RETURN_IF_ERROR(Open(current_->fields().open()));
  const uint64_t size = current_->data_size();
  if (hooks_.received) hooks_.received(size);
  summary_.set_bytes_received(summary_.bytes_received() + size);
  if (sha_ != nullptr) {
    for (std::string_view piece : current_->data()) EVP_DigestUpdate(sha_, piece.data(), piece.size());
  }
  pending_ = current_->data();
  pending_next_ = 0;
  if (!parser_->header_complete()) {
    while (pending_next_ < pending_.size() && !parser_->header_complete()) {
      std::string_view& piece = pending_[pending_next_];
      WEIGHTD_ASSIGN_OR_RETURN(size_t used, parser_->FeedHeader(piece));
      piece.remove_prefix(used);
      if (piece.empty()) {
        ++pending_next_;
      } else if (!parser_->header_complete()) {
        return absl::InternalError(absl::StrCat("shard '", file_, "': the header parser stopped inside the header"));
      }  // else the header ended inside this piece: the rest is data
    }
    if (!parser_->header_complete()) {
      DoneFeeding();
      return true;
    }
    return false;  // the rest of the message keeps its charge until it is fed
  }
  feeding_ = true;
  return true;
}

template <class Transport>
absl::StatusOr<bool> PushShardsReactor<Transport>::FeedPending() {
  if (job_->failed()) return job_->status();
  for (; pending_next_ < pending_.size(); ++pending_next_) {
    std::string_view& piece = pending_[pending_next_];
    uint64_t n = piece.size();
    if (budget_ != nullptr && n > 0) {
      WEIGHTD_ASSIGN_OR_RETURN(n, writer_->AdmitGathers(parser_->data_position(), n, [this] { OnAdmitted(); }));
    }
    if (n > 0) {
      WEIGHTD_RETURN_IF_ERROR(parser_->FeedData(piece.substr(0, n), *writer_));
      piece.remove_prefix(n);
    }
    if (!piece.empty()) return false;  // a gathered tensor waits for host memory
  }
  registry_.MaybeReportProgress(job_->model_id());
  return true;
}

template <class Transport>
void PushShardsReactor<Transport>::DoneFeeding() {
  feeding_ = false;
  pending_.clear();
  pending_next_ = 0;
  current_.reset();  // gRPC's slices go back
  GiveBackCharge();
  Recycle();
}

template <class Transport>
void PushShardsReactor<Transport>::GiveBackCharge() {
  if (budget_ != nullptr && charged_ > 0) budget_->ReleaseMessage(charged_);
  charged_ = 0;
}

template <class Transport>
absl::Status PushShardsReactor<Transport>::Open(const v1::ShardOpen& open) {
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

template <class Transport>
void PushShardsReactor<Transport>::OnResume(absl::Status status) {
  if (!status.ok()) {
    Fail(status);
    return;
  }
  writer_ = job_->Writer(file_);
  if (writer_ == nullptr) {
    Fail(job_->failed() ? job_->status() : absl::InternalError("no writer for shard"));
    return;
  }
  if (placement_ != nullptr) {
    writer_->PlaceOffThread([placement = placement_](std::function<void()> task) {
      placement->Post([task = std::move(task)] {
        SleepOnGpuWaits sleep;  // as the drain's
        task();
      });
    });
  }
  writer_->UseHostBudget(budget_);
  writer_->CoalesceStreamedWrites();
  if (pinning_ != nullptr) writer_->PinGatheredTensors(pinning_);
  feeding_ = true;  // the rest of the message that ended the header
  Drain();
}

template <class Transport>
absl::Status PushShardsReactor<Transport>::EndOfStream() {
  const absl::Status cut = CutOf(*this);
  if (!cut.ok()) {
    if (parser_ == nullptr) return cut;
    return absl::Status(cut.code(), absl::StrCat("shard '", file_, "': ", cut.message(), " (shard byte ",
                                                 parser_->position(), ")"));
  }
  if (parser_ == nullptr) return EndedBeforeOpen();
  if (writer_ == nullptr) {
    // Cut inside the header, or while waiting for the plan: the shard never arrives.
    if (!parser_->header_complete()) {
      return absl::DataLossError(absl::StrCat("shard '", file_, "': stream ended inside the header at byte ",
                                              parser_->position()));
    }
    return absl::DataLossError(absl::StrCat("shard '", file_, "': stream ended before the load was planned"));
  }
  WEIGHTD_RETURN_IF_ERROR(parser_->Finish(*writer_));
  WEIGHTD_RETURN_IF_ERROR(writer_->Settle());
  if (sha_ != nullptr) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(sha_, digest, &len);
    std::string got = Hex(digest, len);
    summary_.set_sha256(got);
    if (got != expected_sha256_) {
      return absl::DataLossError(absl::StrCat("shard '", file_, "': sha256 mismatch: expected ",
                                              expected_sha256_, ", received ", got));
    }
  }
  summary_.set_tensors(static_cast<uint32_t>(parser_->header().tensors.size()));
  return absl::OkStatus();
}

// gRPC drops what a stream received but nobody read yet when the client cancels,
// so a client that cancels right after its first message may leave the daemon
// with no `open` at all. The metadata still names the shard: its load fails now
// rather than waiting for the push idle timeout.
template <class Transport>
absl::Status PushShardsReactor<Transport>::EndedBeforeOpen() {
  if (!named_model_.empty() && !named_file_.empty()) {
    absl::StatusOr<std::shared_ptr<LoadJob>> job = registry_.LoadingJob(named_model_);
    if (job.ok() && (*job)->AwaitsHeader(named_file_)) {
      job_ = *std::move(job);
      file_ = named_file_;
      return absl::DataLossError(
          absl::StrCat("shard '", file_, "': stream ended before its first message was received"));
    }
  }
  return absl::InvalidArgumentError("PushShards stream ended before `open`");
}

template <class Transport>
void PushShardsReactor<Transport>::Fail(const absl::Status& status) {
  std::deque<grpc::ByteBuffer> dropped;  // freed now, not when gRPC is done with the call
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;
    finished_ = true;
    dropped.swap(queue_);
  }
  if (budget_ != nullptr) {
    for (const grpc::ByteBuffer& message : dropped) budget_->ReleaseMessage(message.Length());
  }
  current_.reset();
  GiveBackCharge();
  if (job_ != nullptr) {
    if (writer_ != nullptr) {
      // A placement in flight uses the writer: wait for it, unless the load has
      // failed (then it holds the writer and the job itself, and may never end).
      writer_->Settle().IgnoreError();
      job_->OnShardDone(file_, status);
      writer_ = nullptr;
    } else if (status.code() != absl::StatusCode::kAlreadyExists && job_->ExpectsShard(file_)) {
      job_->Fail(status);
    }
  }
  // The load's own error explains a stream cut short because of another shard.
  absl::Status reply = (job_ != nullptr && job_->failed()) ? job_->status() : status;
  if (status.code() == absl::StatusCode::kAlreadyExists) reply = status;
  reactor_order::Release(this);
  this->Finish(ToGrpcStatus(reply));  // nothing touches `this` after this
}

template <class Transport>
void PushShardsReactor<Transport>::Succeed() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;
    finished_ = true;
  }
  // The last shard's OnShardDone runs the load's final device work (synchronize,
  // broadcast), which a wedged device or collective may never end: the call is
  // answered first, so it never waits on that, and gRPC's shutdown never waits
  // on this call. Only copies are used after Finish.
  std::shared_ptr<LoadJob> job = job_;
  const std::string file = file_;
  Registry& registry = registry_;
  writer_ = nullptr;  // the job's; OnShardDone drops it
  const std::string summary = summary_.SerializeAsString();
  grpc::Slice slice(summary.data(), summary.size());
  *response_ = grpc::ByteBuffer(&slice, 1);
  reactor_order::Release(this);
  this->Finish(grpc::Status::OK);  // nothing touches `this` after this
  job->OnShardDone(file, absl::OkStatus());
  registry.MaybeReportProgress(job->model_id());
}

template <class Transport>
void PushShardsReactor<Transport>::CutIfSilent(DeadlineTimer& timer, std::chrono::milliseconds after) {
  std::lock_guard<std::mutex> lock(mu_);
  silence_timer_ = &timer;
  silence_id_ = timer.At(DeadlineTimer::Clock::now() + after, [this, after] { CutSilent(after); });
}

template <class Transport>
void PushShardsReactor<Transport>::CutSilent(std::chrono::milliseconds after) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (heard_ || finished_) return;  // the drain task answers from here on
    finished_ = true;
  }
  const std::string shard = named_file_.empty() ? std::string() : absl::StrCat("shard '", named_file_, "': ");
  const absl::Status silent = absl::DeadlineExceededError(absl::StrCat(
      shard, "PushShards stream received nothing in its first ", after.count() / 1000.0,
      " s (--push-idle-timeout-seconds)"));
  reactor_order::Release(this);
  this->Finish(ToGrpcStatus(silent));  // nothing touches `this` after this; OnDone waits for this callback
}

template <class Transport>
void PushShardsReactor<Transport>::OnDone() {
  reactor_order::Acquire(this);
  DeadlineTimer* timer = nullptr;
  uint64_t id = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    timer = silence_timer_;
    id = silence_id_;
  }
  if (timer != nullptr) timer->Cancel(id);  // never runs, or has returned
  delete this;
}

template class PushShardsReactor<grpc::ServerReadReactor<grpc::ByteBuffer>>;
template class PushShardsReactor<RawPushCall>;

}  // namespace weightd
