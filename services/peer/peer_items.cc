#include "services/peer/peer_items.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "services/load/output_layout.h"

namespace weightd {

absl::StatusOr<std::vector<PeerItemRef>> PeerItemsOf(const std::vector<ShardInput>& shards,
                                                     const v1::Quantization& quantization) {
  WEIGHTD_ASSIGN_OR_RETURN(
      OutputLayout layout,
      OutputLayout::Create(quantization.scheme(), {quantization.ignore().begin(), quantization.ignore().end()}));
  std::vector<PeerItemRef> items;
  for (size_t s = 0; s < shards.size(); ++s) {
    const auto& tensors = shards[s].header.tensors;
    for (size_t t = 0; t < tensors.size(); ++t) {
      const safetensors::TensorHeader& h = tensors[t];
      TensorOutputs out = layout.For(h.name, h.dtype, h.shape);
      if (!out.quantized) {
        items.push_back(PeerItemRef{PeerItemKind::kStored, s, t, h.name, h.size(), {}});
        continue;
      }
      items.push_back(PeerItemRef{PeerItemKind::kCodes, s, t, out.data.name, out.data.size, out.tiling});
      items.push_back(PeerItemRef{PeerItemKind::kScales, s, t, out.scale.name, out.scale.size, out.tiling});
    }
  }
  return items;
}

absl::Status CheckItemsMatchPlan(const std::vector<PeerItemRef>& items, const LoadPlan& plan) {
  for (const PeerItemRef& item : items) {
    if (item.shard >= plan.tasks.size() || item.tensor >= plan.tasks[item.shard].size()) {
      return absl::FailedPreconditionError(absl::StrCat("item '", item.name, "' has no tensor in the plan"));
    }
    const bool quantized = plan.tasks[item.shard][item.tensor].kind == TaskKind::kQuantize;
    if (quantized != (item.kind != PeerItemKind::kStored)) {
      return absl::FailedPreconditionError(absl::StrCat("item '", item.name, "' is ",
                                                        quantized ? "stored" : "quantized",
                                                        " by the peer and the other way round here"));
    }
  }
  return absl::OkStatus();
}

std::vector<uint32_t> TensorBoundaries(const std::vector<PeerItemRef>& items) {
  std::vector<uint32_t> starts;
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].kind != PeerItemKind::kScales) starts.push_back(static_cast<uint32_t>(i));
  }
  starts.push_back(static_cast<uint32_t>(items.size()));
  return starts;
}

}  // namespace weightd
