#include "services/peer/servable_model.h"

#include <array>
#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "services/load/scale_tiles.h"
#include "services/peer/peer_description.h"

namespace weightd {

std::shared_ptr<ServableModel> ServableModel::Create(std::string model_id, const v1::LoadModelRequest& spec,
                                                     std::shared_ptr<const LoadLayout> layout,
                                                     std::vector<std::shared_ptr<Arena>> arenas,
                                                     DeviceBackend& backend, bool landed) {
  std::shared_ptr<ServableModel> m(new ServableModel());
  m->model_id_ = std::move(model_id);
  m->spec_ = spec;
  m->layout_ = std::move(layout);
  m->arenas_ = std::move(arenas);
  m->backend_ = &backend;
  if (spec.placement().layout() == v1::LAYOUT_VLLM) {
    m->refusal_ = absl::FailedPreconditionError(absl::StrCat(
        "model '", m->model_id_, "' is held in layout vllm (fused, padded tensors); peers are served models held "
        "in layout checkpoint, from which either layout loads"));
  }
  absl::StatusOr<std::vector<PeerItemRef>> items = PeerItemsOf(m->layout_->shards, spec.quantization());
  if (!items.ok()) {
    m->refusal_ = items.status();
  } else {
    m->items_ = std::move(*items);
    if (m->refusal_.ok()) m->refusal_ = CheckItemsMatchPlan(m->items_, m->layout_->plan);
  }
  m->landed_.assign(m->items_.size(), landed);
  m->placed_.assign(m->items_.size(), 0);
  m->crcs_.assign(m->items_.size(), std::nullopt);
  m->landed_count_ = landed ? m->items_.size() : 0;
  return m;
}

absl::StatusOr<const v1::PeerModel*> ServableModel::Describe() const {
  WEIGHTD_RETURN_IF_ERROR(refusal_);
  std::shared_lock<std::shared_mutex> lock(memory_mu_);
  WEIGHTD_RETURN_IF_ERROR(cancelled_);
  return &Description();
}

const v1::PeerModel& ServableModel::Description() const {
  std::call_once(described_, [this] {
    description_ = DescribeModel(model_id_, spec_, layout_->shards, layout_->config_json, items_);
  });
  return description_;
}

void ServableModel::MarkLanded(const std::vector<uint32_t>& items, const std::vector<uint32_t>& crcs) {
  {
    std::lock_guard<std::mutex> lock(landed_mu_);
    for (size_t i = 0; i < items.size(); ++i) {
      if (items[i] >= landed_.size() || landed_[items[i]]) continue;
      landed_[items[i]] = true;
      if (i < crcs.size()) crcs_[items[i]] = crcs[i];
      ++landed_count_;
    }
  }
  landed_cv_.notify_all();
}

void ServableModel::MarkPlaced(uint32_t item, uint64_t end) {
  {
    std::lock_guard<std::mutex> lock(landed_mu_);
    if (item >= placed_.size() || placed_[item] >= end) return;
    placed_[item] = end;
  }
  landed_cv_.notify_all();
}

absl::Status ServableModel::AwaitPlaced(uint32_t item, uint64_t end, const std::atomic<bool>& stop) const {
  std::unique_lock<std::mutex> lock(landed_mu_);
  if (item >= landed_.size()) return absl::OkStatus();
  const bool whole = end >= items_[item].size;
  while (!landed_[item] && (whole || placed_[item] < end)) {
    if (stop.load()) return absl::AbortedError("the serving stream ended");
    {
      std::shared_lock<std::shared_mutex> memory(memory_mu_);
      if (!cancelled_.ok()) return cancelled_;
    }
    landed_cv_.wait_for(lock, std::chrono::milliseconds(50));
  }
  return absl::OkStatus();
}

std::optional<uint32_t> ServableModel::ArrivedCrc(uint32_t item) const {
  std::lock_guard<std::mutex> lock(landed_mu_);
  return item < crcs_.size() ? crcs_[item] : std::nullopt;
}

void ServableModel::Cancel(const absl::Status& status) {
  std::vector<std::shared_ptr<Arena>> memory;  // let go outside the lock
  {
    std::unique_lock<std::shared_mutex> lock(memory_mu_);
    if (cancelled_.ok()) cancelled_ = status.ok() ? absl::AbortedError("serving ended") : status;
    memory.swap(arenas_);
  }
  landed_cv_.notify_all();
}

absl::Status ServableModel::Read(uint32_t item, uint64_t offset, uint64_t size, char* out) const {
  if (item >= items_.size()) return absl::OutOfRangeError(absl::StrCat("no item ", item));
  const PeerItemRef& ref = items_[item];
  if (offset > ref.size || size > ref.size - offset) {
    return absl::OutOfRangeError(absl::StrCat("bytes past the end of tensor '", ref.name, "'"));
  }
  std::shared_lock<std::shared_mutex> lock(memory_mu_);
  WEIGHTD_RETURN_IF_ERROR(cancelled_);
  if (ref.kind != PeerItemKind::kScales) return ReadBytes(ref, offset, size, out);
  std::vector<float> scales;
  WEIGHTD_RETURN_IF_ERROR(ReadScales(ref, scales));
  std::memcpy(out, reinterpret_cast<const char*>(scales.data()) + offset, size);
  return absl::OkStatus();
}

// The slice of each rank that holds distinct bytes, read back and put in place.
absl::Status ServableModel::ReadBytes(const PeerItemRef& item, uint64_t offset, uint64_t size, char* out) const {
  const TensorTask& task = layout_->plan.tasks[item.shard][item.tensor];
  const safetensors::TensorHeader& t = layout_->shards[item.shard].header.tensors[item.tensor];
  const size_t element = item.kind == PeerItemKind::kCodes ? 1 : kernels::DTypeSize(t.dtype);
  const size_t ranks = task.split.replicated() ? 1 : task.parts.size();
  std::string buffer;
  uint64_t covered = 0;
  for (size_t r = 0; r < ranks; ++r) {
    bool repeat = false;  // key/value heads shared by ranks: one read does
    for (size_t earlier = 0; earlier < r && !repeat; ++earlier) {
      repeat = task.split.begin[earlier] == task.split.begin[r] && task.split.length[earlier] == task.split.length[r];
    }
    if (repeat) continue;
    const SliceBytes slice = SliceBytesOf(task.split, r, t.shape, element);
    std::vector<std::array<uint64_t, 3>> pieces;  // whole offset, local offset, bytes
    const SliceWindow window = ForEachPieceIn(slice, offset, offset + size, [&](uint64_t w, uint64_t l, uint64_t n) {
      pieces.push_back({w, l, n});
    });
    if (window.empty()) continue;
    const RankPart& part = task.parts[r];
    const uint64_t base = layout_->plan.ranks[r].tensors[part.output].offset + part.output_offset;
    buffer.resize(window.local_end - window.local_begin);
    WEIGHTD_RETURN_IF_ERROR(
        backend_->Read(arenas_[r]->allocation(), base + window.local_begin, buffer.size(), buffer.data()));
    for (const auto& [w, l, n] : pieces) {
      std::memcpy(out + (w - offset), buffer.data() + (l - window.local_begin), n);
      covered += n;
    }
  }
  if (covered != size) {  // the ranks' slices must tile the tensor
    return absl::InternalError(absl::StrCat("tensor '", item.name, "': the ranks hold ", covered, " of bytes [", offset,
                                            ", ", offset + size, ")"));
  }
  return absl::OkStatus();
}

absl::Status ServableModel::ReadScales(const PeerItemRef& item, std::vector<float>& scales) const {
  const TensorTask& task = layout_->plan.tasks[item.shard][item.tensor];
  scales.assign(item.whole.num_tiles(), 0.0f);
  const size_t ranks = task.split.replicated() ? 1 : task.parts.size();
  std::vector<float> own;
  for (size_t r = 0; r < ranks; ++r) {
    const RankPart& part = task.parts[r];
    const std::vector<size_t> tiles = WholeTilesOfRank(task, r, item.whole);
    own.resize(tiles.size());
    const uint64_t base = layout_->plan.ranks[r].tensors[part.scale].offset + part.scale_offset;
    WEIGHTD_RETURN_IF_ERROR(backend_->Read(arenas_[r]->allocation(), base, own.size() * sizeof(float), own.data()));
    for (size_t i = 0; i < tiles.size(); ++i) {
      if (tiles[i] < scales.size()) scales[tiles[i]] = own[i];
    }
  }
  return absl::OkStatus();
}

}  // namespace weightd
