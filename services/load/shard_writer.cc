#include "services/load/shard_writer.h"


#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "kernels/quantize_fast.h"

namespace weightd {

ShardWriter::ShardWriter(std::string file, const safetensors::ShardHeader& header,
                         const std::vector<TensorTask>& tasks, const RankPlan& rank,
                         std::shared_ptr<Arena> arena, DeviceBackend& backend,
                         kernels::NonFinitePolicy policy, LoadProgress& progress,
                         const std::atomic<bool>& aborted)
    : file_(std::move(file)),
      header_(header),
      tasks_(tasks),
      rank_(rank),
      arena_(std::move(arena)),
      backend_(backend),
      policy_(policy),
      progress_(progress),
      aborted_(aborted) {}

std::string ShardWriter::Where(size_t index) const {
  return absl::StrCat("shard '", file_, "': tensor '", header_.tensors[index].name, "'");
}

absl::Status ShardWriter::OnTensorBytes(size_t index, uint64_t offset, std::string_view bytes) {
  if (aborted_.load(std::memory_order_relaxed)) return absl::AbortedError("load aborted");
  const TensorTask& task = tasks_[index];
  if (task.kind == TaskKind::kStore) {
    WEIGHTD_RETURN_IF_ERROR(
        backend_.Write(arena_->allocation(), rank_.tensors[task.output].offset + offset, bytes));
  } else {
    std::string* buffer;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto [it, inserted] = staging_.try_emplace(index);
      if (inserted && !spare_.empty()) {
        it->second = std::move(spare_.back());
        spare_.pop_back();
      }
      buffer = &it->second;  // only this tensor's thread touches it until it completes
    }
    if (offset == 0) {
      buffer->clear();
      buffer->reserve(header_.tensors[index].size());
    }
    buffer->append(bytes);
  }
  progress_.add_bytes(bytes.size());
  return absl::OkStatus();
}

absl::Status ShardWriter::OnTensorComplete(size_t index) {
  if (aborted_.load(std::memory_order_relaxed)) return absl::AbortedError("load aborted");
  if (tasks_[index].kind == TaskKind::kQuantize) {
    std::string source;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = staging_.find(index);
      if (it != staging_.end()) {
        source = std::move(it->second);
        staging_.erase(it);
      }
    }
    absl::Status quantized = Quantize(index, source);
    {
      std::lock_guard<std::mutex> lock(mu_);
      spare_.push_back(std::move(source));
    }
    WEIGHTD_RETURN_IF_ERROR(quantized);
  }
  progress_.add_tensor();
  return absl::OkStatus();
}

absl::Status ShardWriter::OnWholeTensor(size_t index, std::string_view bytes) {
  if (aborted_.load(std::memory_order_relaxed)) return absl::AbortedError("load aborted");
  if (tasks_[index].kind != TaskKind::kQuantize) {
    WEIGHTD_RETURN_IF_ERROR(OnTensorBytes(index, 0, bytes));
    return OnTensorComplete(index);
  }
  progress_.add_bytes(bytes.size());
  WEIGHTD_RETURN_IF_ERROR(Quantize(index, bytes));
  progress_.add_tensor();
  return absl::OkStatus();
}

absl::Status ShardWriter::Quantize(size_t index, std::string_view source) {
  const safetensors::TensorHeader& t = header_.tensors[index];
  const TensorTask& task = tasks_[index];
  const kernels::Tiling& tiling = task.tiling;
  std::vector<float> scales(tiling.num_tiles());
  absl::Status scaled =
      kernels::TileScalesFast(task.scheme, t.dtype, source.data(), tiling, policy_, scales.data());
  if (!scaled.ok()) {
    // Error path only: find the element again to name its byte offset in the file.
    const size_t i = kernels::FindNonFinite(t.dtype, source.data(), static_cast<size_t>(t.num_elements()));
    const uint64_t at = header_.data_start() + t.begin + i * kernels::DTypeSize(t.dtype);
    return absl::InvalidArgumentError(absl::StrCat(Where(index), ": non-finite value at element ", i,
                                                   " (file byte offset ", at, ")"));
  }
  WEIGHTD_RETURN_IF_ERROR(backend_.Quantize(arena_->allocation(), rank_.tensors[task.output].offset, t.dtype,
                                            source.data(), tiling, scales.data()));
  WEIGHTD_RETURN_IF_ERROR(backend_.Write(
      arena_->allocation(), rank_.tensors[task.scale].offset,
      std::string_view(reinterpret_cast<const char*>(scales.data()), scales.size() * sizeof(float))));
  return absl::OkStatus();
}

}  // namespace weightd
