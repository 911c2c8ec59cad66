#include "services/load/shard_writer.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "kernels/quantize_fast.h"
#include "kernels/stream_copy.h"

namespace weightd {

ShardWriter::ShardWriter(std::string file, const safetensors::ShardHeader& header,
                         const std::vector<TensorTask>& tasks, std::shared_ptr<TensorPlacer> placer,
                         kernels::NonFinitePolicy policy, LoadProgress& progress,
                         const std::atomic<bool>& aborted)
    : file_(std::move(file)),
      header_(header),
      tasks_(tasks),
      placer_(std::move(placer)),
      policy_(policy),
      progress_(progress),
      aborted_(aborted) {
  for (size_t i = 0; i < tasks_.size(); ++i) {
    streams_.push_back(TensorPlacer::Streams(tasks_[i], header_.tensors[i]));
    whole_amax_.push_back(TensorPlacer::TakesWholeAmax(tasks_[i]));
  }
}

absl::Status ShardWriter::NoHostMemory(size_t index) const {
  return absl::ResourceExhaustedError(absl::StrCat(Where(index), ": gathering its ", header_.tensors[index].size(),
                                                   " bytes on the host failed: no host memory for them (set "
                                                   "--host-memory-limit to bound what loads gather)"));
}

std::string ShardWriter::Where(size_t index) const {
  return absl::StrCat("shard '", file_, "': tensor '", header_.tensors[index].name, "'");
}

absl::Status ShardWriter::OnTensorBytes(size_t index, uint64_t offset, std::string_view bytes) {
  if (aborted_.load(std::memory_order_relaxed)) return absl::AbortedError("load aborted");
  if (post_ && offset == 0) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!place_status_.ok()) return place_status_;  // an earlier tensor's placement failed
  }
  if (streams_[index] && coalesce_) {
    if (!run_.empty() && (index != run_index_ || offset != run_offset_ + run_.size() ||
                          run_.size() + bytes.size() > kStreamedRunBytes)) {
      WEIGHTD_RETURN_IF_ERROR(FlushRun());
    }
    if (bytes.size() >= kStreamedRunBytes) {
      WEIGHTD_RETURN_IF_ERROR(placer_->WriteStreamed(tasks_[index], header_.tensors[index], offset, bytes));
    } else {
      if (run_.empty()) {
        run_index_ = index;
        run_offset_ = offset;
        run_.reserve(kStreamedRunBytes);
      }
      run_.append(bytes);
    }
  } else if (streams_[index]) {
    WEIGHTD_RETURN_IF_ERROR(placer_->WriteStreamed(tasks_[index], header_.tensors[index], offset, bytes));
  } else {
    Gathering* gathering;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto [it, inserted] = staging_.try_emplace(index);
      if (inserted && !spare_.empty()) {
        it->second.bytes = std::move(spare_.back());
        spare_.pop_back();
        if (spare_charge_ > 0) {  // the admitted bytes follow the buffer
          admitted_[index] += spare_charge_;
          spare_charge_ = 0;
        }
      }
      gathering = &it->second;  // only this tensor's thread touches it until it completes
    }
    GatherBuffer& buffer = gathering->bytes.bytes();
    if (offset == 0) {
      // Without --host-memory-limit nothing admits the tensor first: memory that
      // cannot be had fails its load here.
      if (!gathering->bytes.Reset(header_.tensors[index].size())) return NoHostMemory(index);
      if (whole_amax_[index]) gathering->amax.emplace(header_.tensors[index].dtype);
    }
    const uint64_t at = buffer.size();
    char* to = buffer.Extend(bytes.size());
    if (offset != at || to == nullptr) {  // the parser hands a gathered tensor's bytes over in order
      return absl::InternalError(absl::StrCat(Where(index), ": bytes [", offset, ", +", bytes.size(),
                                              ") out of order (", at, " gathered)"));
    }
    if (gathering->amax) {
      gathering->amax->CopyAppend(buffer.data(), at, bytes);  // the amax in the same pass as the copy
    } else {
      kernels::StreamCopy(to, bytes.data(), bytes.size());  // read again once whole, long after
    }
  }
  progress_.add_bytes(bytes.size());
  return absl::OkStatus();
}

absl::Status ShardWriter::OnTensorComplete(size_t index) {
  if (aborted_.load(std::memory_order_relaxed)) return absl::AbortedError("load aborted");
  if (streams_[index]) {
    WEIGHTD_RETURN_IF_ERROR(FlushRun());
    WEIGHTD_RETURN_IF_ERROR(placer_->Complete(tasks_[index]));
    progress_.add_tensor();
    return absl::OkStatus();
  }
  PinnedGather source;
  std::optional<float> amax;
  {
    std::unique_lock<std::mutex> lock(mu_);
    auto it = staging_.find(index);
    if (it != staging_.end()) {
      source = std::move(it->second.bytes);
      if (it->second.amax && it->second.amax->scanned() == source.bytes().size()) amax = it->second.amax->amax();
      staging_.erase(it);
    }
    if (post_) {
      WEIGHTD_RETURN_IF_ERROR(AwaitPlacement(lock));
      placing_ = true;
    }
  }
  if (!post_) return PlaceGathered(index, std::move(source), amax);
  // The task owns the gathered bytes and holds the writer and its owner: a
  // stream of a failed load may end before the task does (OnAborted).
  // (std::function copies its target: the move-only buffer goes behind a shared_ptr.)
  post_([self = shared_from_this(), owner = owner_.lock(), index, amax,
         source = std::make_shared<PinnedGather>(std::move(source))]() mutable {
    absl::Status placed = self->PlaceGathered(index, std::move(*source), amax);
    {
      std::lock_guard<std::mutex> lock(self->mu_);
      if (self->place_status_.ok()) self->place_status_ = placed;
      self->placing_ = false;
      self->placed_.notify_all();
    }
    self.reset();  // before its owner: the writer refers into it
    owner.reset();
  });
  return absl::OkStatus();
}

absl::Status ShardWriter::FlushRun() {
  if (run_.empty()) return absl::OkStatus();
  absl::Status written = placer_->WriteStreamed(tasks_[run_index_], header_.tensors[run_index_], run_offset_, run_);
  run_.clear();  // keeps its capacity for the next run
  return written;
}

absl::Status ShardWriter::PlaceGathered(size_t index, PinnedGather source, std::optional<float> amax) {
  if (tasks_[index].fused_scale >= 0) {
    // Held until the fused output's other parts arrive, outside the budget: kept
    // charged, it could hold back the admission of the very parts it waits for.
    if (budget_ != nullptr) {
      uint64_t charge;
      {
        std::lock_guard<std::mutex> lock(mu_);
        charge = TakeAdmittedLocked(index);
      }
      if (charge > 0) budget_->ReleaseGather(charge);
    }
    WEIGHTD_RETURN_IF_ERROR(QuantizeFused(index, source.Release(), amax));
    progress_.add_tensor();
    return absl::OkStatus();
  }
  if (pinning_ != nullptr && !ScalesFromCopies(tasks_[index]) && pinning_->Now()) {
    source.Pin(placer_->backend());  // nothing to do where the buffer's pin covers the tensor
  } else {
    source.Unpin();
  }
  absl::Status placed = Place(index, source.bytes().view(), amax);
  source.AwaitCopies();  // then the buffer may take the next tensor's bytes
  if (budget_ == nullptr) {
    std::lock_guard<std::mutex> lock(mu_);
    spare_.push_back(std::move(source));
  } else {
    // Under a budget one buffer is kept, its capacity still charged, while no
    // stream waits for memory: the next tensor of the same size reuses it
    // without waiting (AdmitGathers). A stream that may wait holds none, so a
    // kept buffer never holds back the admissions that would free it.
    const bool keep = !budget_->HasWaiters();
    uint64_t release;
    {
      std::lock_guard<std::mutex> lock(mu_);
      release = TakeAdmittedLocked(index);
      if (keep && spare_.empty() && release >= source.bytes().capacity()) {
        spare_charge_ = source.bytes().capacity();
        release -= spare_charge_;
        spare_.push_back(std::move(source));
      }
    }
    if (release > 0) budget_->ReleaseGather(release);
  }
  WEIGHTD_RETURN_IF_ERROR(placed);
  WEIGHTD_RETURN_IF_ERROR(placer_->Complete(tasks_[index]));
  progress_.add_tensor();
  return absl::OkStatus();
}

uint64_t ShardWriter::TakeAdmittedLocked(size_t index) {
  auto it = admitted_.find(index);
  if (it == admitted_.end()) return 0;
  const uint64_t bytes = it->second;
  admitted_.erase(it);
  return bytes;
}

absl::Status ShardWriter::AwaitPlacement(std::unique_lock<std::mutex>& lock) {
  placed_.wait(lock, [this] { return !placing_ || aborted_.load(); });
  if (placing_) return absl::AbortedError("load aborted");  // the placement holds what it uses
  return place_status_;
}

void ShardWriter::OnAborted() {
  std::lock_guard<std::mutex> lock(mu_);
  placed_.notify_all();
}

ShardWriter::~ShardWriter() {
  if (budget_ == nullptr) return;
  if (waiting_ticket_ != 0 && !budget_->Withdraw(waiting_ticket_)) {
    budget_->ReleaseGather(header_.tensors[next_admit_].size());
  }
  for (const auto& [index, bytes] : admitted_) budget_->ReleaseGather(bytes);
  if (spare_charge_ > 0) budget_->ReleaseGather(spare_charge_);
}

bool ShardWriter::TakeSpareCharge(size_t index, uint64_t bytes) {
  uint64_t release = 0;
  PinnedGather freed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (spare_charge_ == 0) return false;
    if (spare_charge_ >= bytes && !spare_.empty()) {
      admitted_[index] = spare_charge_;  // the spare buffer (large enough) gathers it
      spare_charge_ = 0;
      return true;
    }
    // Too small: a stream that may wait for memory holds none (host_budget.h).
    release = spare_charge_;
    spare_charge_ = 0;
    if (!spare_.empty()) {
      freed = std::move(spare_.back());
      spare_.pop_back();
    }
  }
  budget_->ReleaseGather(release);
  return false;
}

absl::StatusOr<uint64_t> ShardWriter::AdmitGathers(uint64_t begin, uint64_t n, std::function<void()> ready) {
  const std::vector<safetensors::TensorHeader>& tensors = header_.tensors;
  if (budget_ == nullptr) return n;
  while (next_admit_ < tensors.size() && tensors[next_admit_].begin < begin + n) {
    const size_t index = next_admit_;
    const uint64_t bytes = tensors[index].size();
    if (streams_[index] || bytes == 0 || tensors[index].begin < begin) {
      ++next_admit_;  // written through, empty, or begun before this stream's admission
      continue;
    }
    if (waiting_ticket_ != 0) {
      if (budget_->Waiting(waiting_ticket_)) return tensors[index].begin - begin;
      waiting_ticket_ = 0;  // admitted meanwhile
    } else if (TakeSpareCharge(index, bytes)) {
      ++next_admit_;
      continue;
    } else {
      HostBudget::Ticket ticket = budget_->AdmitGather(bytes, ready);
      if (ticket.admission == HostBudget::Admission::kTooLarge) {
        return absl::ResourceExhaustedError(absl::StrCat(
            Where(index), ": gathering its ", bytes, " bytes on the host needs more than --host-memory-limit allows (",
            budget_->gather_limit(), " bytes for gathered tensors, three quarters of the limit)"));
      }
      if (ticket.admission == HostBudget::Admission::kQueued) {
        waiting_ticket_ = ticket.id;
        return tensors[index].begin - begin;
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      admitted_[index] = bytes;
    }
    ++next_admit_;
  }
  return n;
}

absl::Status ShardWriter::Settle() {
  std::unique_lock<std::mutex> lock(mu_);
  return AwaitPlacement(lock);
}

absl::Status ShardWriter::OnWholeTensor(size_t index, std::string_view bytes) {
  if (aborted_.load(std::memory_order_relaxed)) return absl::AbortedError("load aborted");
  if (streams_[index]) {
    WEIGHTD_RETURN_IF_ERROR(OnTensorBytes(index, 0, bytes));
    return OnTensorComplete(index);
  }
  progress_.add_bytes(bytes.size());
  if (tasks_[index].fused_scale >= 0) {  // held until its fused output's scale is known: a copy
    GatherBuffer copy = GatherBuffer::CopyOf(bytes);
    if (copy.size() != bytes.size()) return NoHostMemory(index);
    WEIGHTD_RETURN_IF_ERROR(QuantizeFused(index, std::move(copy), std::nullopt));
  } else {
    WEIGHTD_RETURN_IF_ERROR(Place(index, bytes));
    WEIGHTD_RETURN_IF_ERROR(placer_->Complete(tasks_[index]));
  }
  progress_.add_tensor();
  return absl::OkStatus();
}

absl::Status ShardWriter::Place(size_t index, std::string_view source, std::optional<float> amax) {
  const TensorTask& task = tasks_[index];
  if (task.kind == TaskKind::kQuantize) return Quantize(index, source, amax);
  return placer_->WriteWhole(task, header_.tensors[index], source.data());
}

absl::Status ShardWriter::Quantize(size_t index, std::string_view source, std::optional<float> amax) {
  const safetensors::TensorHeader& t = header_.tensors[index];
  absl::Status placed = placer_->Quantize(tasks_[index], t, source.data(), policy_, amax);
  if (placed.ok() || placed.code() != absl::StatusCode::kInvalidArgument) return placed;
  return NonFiniteError(index, source);
}

absl::Status ShardWriter::QuantizeFused(size_t index, GatherBuffer source, std::optional<float> amax) {
  const safetensors::TensorHeader& t = header_.tensors[index];
  absl::StatusOr<std::vector<float>> per_rank = placer_->FusedAmax(tasks_[index], t, source.data(), policy_, amax);
  if (!per_rank.ok()) {  // non-finite values are named here, while the bytes are at hand
    return per_rank.status().code() == absl::StatusCode::kInvalidArgument ? NonFiniteError(index, source.view())
                                                                         : per_rank.status();
  }
  return placer_->QuantizeFused(tasks_[index], t, std::move(source), *std::move(per_rank));
}

absl::Status ShardWriter::NonFiniteError(size_t index, std::string_view source) const {
  const safetensors::TensorHeader& t = header_.tensors[index];
  // Error path only: find the element again to name its byte offset in the file.
  const size_t i = kernels::FindNonFinite(t.dtype, source.data(), static_cast<size_t>(t.num_elements()));
  const uint64_t at = header_.data_start() + t.begin + i * kernels::DTypeSize(t.dtype);
  return absl::InvalidArgumentError(absl::StrCat(Where(index), ": non-finite value at element ", i,
                                                 " (file byte offset ", at, ")"));
}

}  // namespace weightd
