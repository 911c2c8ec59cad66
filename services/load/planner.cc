#include "services/load/planner.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "services/device/device_backend.h"

namespace weightd {
namespace {

size_t Append(RankPlan& rank, OutputSpec spec, const TensorSplit& split, const std::vector<int64_t>& full_shape) {
  OutputTensor out{std::move(spec.name), spec.dtype, std::move(spec.shape), RoundUp(rank.used_bytes, kTensorAlignment),
                   spec.size};
  if (!split.replicated() && split.length[rank.rank] != full_shape[split.dim]) {
    out.slice_dim = split.dim;
    out.slice_begin = split.begin[rank.rank];
    out.full_shape = full_shape;
  }
  rank.used_bytes = out.offset + out.size;
  rank.tensors.push_back(std::move(out));
  return rank.tensors.size() - 1;
}

// Whether a rank's tile scales depend on bytes other ranks hold.
bool NeedsReduction(const TensorOutputs& whole, const TensorSplit& split, v1::ScaleScope scope) {
  if (!whole.quantized || split.replicated() || scope == v1::SCALE_SCOPE_SHARD) return false;
  if (whole.scheme == kernels::Scheme::kPerTensor) return true;
  // A row split leaves each row's channel spread over the ranks (one rank: whole rows).
  return whole.scheme == kernels::Scheme::kPerChannel && split.dim == 1 && split.begin.size() > 1;
}

}  // namespace

std::vector<uint64_t> LoadPlan::DeviceBytes() const {
  int max_device = -1;
  for (const RankPlan& r : ranks) max_device = std::max(max_device, r.device);
  std::vector<uint64_t> bytes(static_cast<size_t>(max_device + 1), 0);
  for (const RankPlan& r : ranks) bytes[r.device] += r.arena_bytes;
  return bytes;
}

absl::StatusOr<LoadPlan> PlanLoad(const std::vector<ShardInput>& shards, const PlanOptions& options) {
  if (options.devices.empty()) return absl::InvalidArgumentError("a load needs at least one device");
  for (int device : options.devices) {
    if (device < 0 || static_cast<size_t>(device) >= options.device_granularity.size()) {
      return absl::InvalidArgumentError(absl::StrCat("device ", device, " does not exist (",
                                                     options.device_granularity.size(), " devices)"));
    }
  }
  WEIGHTD_ASSIGN_OR_RETURN(OutputLayout layout, OutputLayout::Create(options.scheme, options.ignore));
  WEIGHTD_ASSIGN_OR_RETURN(ShardingRules rules, ShardingRules::Create(options.sharding_rules));
  const uint32_t tp = static_cast<uint32_t>(options.devices.size());

  LoadPlan plan;
  plan.ranks.resize(tp);
  for (uint32_t r = 0; r < tp; ++r) {
    plan.ranks[r].rank = r;
    plan.ranks[r].device = options.devices[r];
  }
  absl::flat_hash_map<std::string, std::string> owner;  // output name -> what produced it

  auto claim = [&](const std::string& name, const std::string& why) -> absl::Status {
    auto [it, inserted] = owner.emplace(name, why);
    if (!inserted) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", name, "' appears twice: ", it->second, " and ", why));
    }
    return absl::OkStatus();
  };

  plan.tasks.resize(shards.size());
  for (size_t s = 0; s < shards.size(); ++s) {
    const ShardInput& shard = shards[s];
    for (const safetensors::TensorHeader& t : shard.header.tensors) {
      plan.source_bytes += t.size();
      ++plan.source_tensors;
      std::string where = absl::StrCat("in shard '", shard.file, "'");
      WEIGHTD_RETURN_IF_ERROR(claim(t.name, where));
      const TensorOutputs whole = layout.For(t.name, t.dtype, t.shape);
      const bool block = whole.quantized && whole.scheme == kernels::Scheme::kBlock;
      TensorTask task;
      WEIGHTD_ASSIGN_OR_RETURN(task.split, SplitTensor(t.name, t.shape, rules.For(t.name), tp, options.heads,
                                                       block ? static_cast<int64_t>(kernels::kBlockSize) : 1));
      if (tp > 1 && t.dtype == kernels::DType::kF8E4M3) {
        return absl::InvalidArgumentError(absl::StrCat("tensor '", t.name, "' ", where,
                                                       " is already F8_E4M3: checkpoints in FP8 load with tp_size 1 only"));
      }
      if (whole.quantized) {
        WEIGHTD_RETURN_IF_ERROR(claim(whole.scale.name, absl::StrCat("the scale of '", t.name, "' ", where)));
        task.kind = TaskKind::kQuantize;
        task.scheme = whole.scheme;
        task.reduce_amax = NeedsReduction(whole, task.split, options.scale_scope);
        ++plan.quantized_tensors;
      }
      for (uint32_t r = 0; r < tp; ++r) {
        TensorOutputs part = layout.For(t.name, t.dtype, task.split.SliceShape(t.shape, r));
        if (part.quantized != whole.quantized) {
          return absl::InternalError(absl::StrCat("tensor '", t.name, "': a slice is quantized differently"));
        }
        RankPart rank_part;
        rank_part.output = Append(plan.ranks[r], std::move(part.data), task.split, t.shape);
        if (whole.quantized) {
          rank_part.scale = Append(plan.ranks[r], std::move(part.scale), TensorSplit{}, {});
          rank_part.tiling = part.tiling;
        }
        task.parts.push_back(rank_part);
      }
      task.output = task.parts[0].output;
      task.scale = task.parts[0].scale;
      task.tiling = task.parts[0].tiling;
      if (auto module = layout.IgnoredModule(t.name, t.dtype, t.shape)) plan.ignored_modules.push_back(*module);
      plan.tasks[s].push_back(std::move(task));
    }
  }
  for (RankPlan& rank : plan.ranks) {
    rank.arena_bytes = RoundUp(std::max<uint64_t>(rank.used_bytes, 1), options.device_granularity[rank.device]);
  }
  return plan;
}

}  // namespace weightd
