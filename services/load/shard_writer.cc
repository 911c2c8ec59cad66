#include "services/load/shard_writer.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "kernels/quantize_fast.h"

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
  for (size_t i = 0; i < tasks_.size(); ++i) streams_.push_back(TensorPlacer::Streams(tasks_[i], header_.tensors[i]));
}

std::string ShardWriter::Where(size_t index) const {
  return absl::StrCat("shard '", file_, "': tensor '", header_.tensors[index].name, "'");
}

absl::Status ShardWriter::OnTensorBytes(size_t index, uint64_t offset, std::string_view bytes) {
  if (aborted_.load(std::memory_order_relaxed)) return absl::AbortedError("load aborted");
  if (streams_[index]) {
    WEIGHTD_RETURN_IF_ERROR(placer_->WriteStreamed(tasks_[index], header_.tensors[index], offset, bytes));
  } else {
    if (offset == 0) {
      staging_.clear();
      staging_.reserve(header_.tensors[index].size());
    }
    staging_.append(bytes);
  }
  progress_.add_bytes(bytes.size());
  return absl::OkStatus();
}

absl::Status ShardWriter::OnTensorComplete(size_t index) {
  if (aborted_.load(std::memory_order_relaxed)) return absl::AbortedError("load aborted");
  const TensorTask& task = tasks_[index];
  if (task.kind == TaskKind::kQuantize) {
    WEIGHTD_RETURN_IF_ERROR(Quantize(index));
  } else if (!streams_[index]) {
    WEIGHTD_RETURN_IF_ERROR(placer_->WriteWhole(task, header_.tensors[index], staging_.data()));
  }
  if (!streams_[index]) std::string().swap(staging_);
  placer_->Complete(task);
  progress_.add_tensor();
  return absl::OkStatus();
}

absl::Status ShardWriter::Quantize(size_t index) {
  const safetensors::TensorHeader& t = header_.tensors[index];
  absl::Status placed = placer_->Quantize(tasks_[index], t, staging_.data(), policy_);
  if (placed.ok() || placed.code() != absl::StatusCode::kInvalidArgument) return placed;
  // Error path only: find the element again to name its byte offset in the file.
  const size_t i = kernels::FindNonFinite(t.dtype, staging_.data(), static_cast<size_t>(t.num_elements()));
  const uint64_t at = header_.data_start() + t.begin + i * kernels::DTypeSize(t.dtype);
  return absl::InvalidArgumentError(absl::StrCat(Where(index), ": non-finite value at element ", i,
                                                 " (file byte offset ", at, ")"));
}

}  // namespace weightd
