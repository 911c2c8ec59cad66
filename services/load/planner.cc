#include "services/load/planner.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "services/device/device_backend.h"
#include "services/load/engine_layout.h"

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

namespace {

// Layout vllm's fused outputs: every part's header and split, found before
// planning so that the first part to be planned can size the fused output.
struct FusedGroup {
  std::vector<const safetensors::TensorHeader*> parts;
  std::vector<std::string> where;
  std::vector<TensorSplit> splits;
  FusedPart info;
  std::vector<size_t> outputs, scales;  // per rank, once planned
  int fused_scale = -1;
};

using FusedGroups = absl::flat_hash_map<std::string, FusedGroup>;

absl::StatusOr<FusedGroups> FindFusedGroups(const std::vector<ShardInput>& shards, const OutputLayout& layout,
                                            const ShardingRules& rules, const PlanOptions& options, uint32_t tp) {
  FusedGroups groups;
  if (options.layout != v1::LAYOUT_VLLM) return groups;
  for (const ShardInput& shard : shards) {
    for (const safetensors::TensorHeader& t : shard.header.tensors) {
      std::optional<FusedPart> part = VllmFusedPart(t.name);
      if (!part) continue;
      FusedGroup& g = groups[part->fused];
      if (g.parts.empty()) {
        g.info = *part;
        g.parts.resize(part->parts, nullptr);
        g.where.resize(part->parts);
        g.splits.resize(part->parts);
      }
      g.parts[part->part] = &t;
      g.where[part->part] = absl::StrCat("in shard '", shard.file, "'");
    }
  }
  for (auto& [name, g] : groups) {
    const safetensors::TensorHeader* first = nullptr;
    for (size_t p = 0; p < g.parts.size(); ++p) {
      const safetensors::TensorHeader* t = g.parts[p];
      if (t == nullptr) {
        const safetensors::TensorHeader* any = *std::find_if(g.parts.begin(), g.parts.end(), [](auto* x) { return x; });
        return absl::InvalidArgumentError(absl::StrCat("layout vllm fuses ", g.info.members, " into '", name,
                                                       "', but the checkpoint has no '",
                                                       VllmPartName(any->name, g.info, p), "'"));
      }
      const TensorOutputs out = layout.For(t->name, t->dtype, t->shape);
      const bool block = out.quantized && out.scheme == kernels::Scheme::kBlock;
      WEIGHTD_ASSIGN_OR_RETURN(g.splits[p], SplitTensor(t->name, t->shape, rules.For(t->name), tp, options.heads,
                                                        block ? static_cast<int64_t>(kernels::kBlockSize) : 1));
      if (g.splits[p].dim != 0) {
        return absl::InvalidArgumentError(absl::StrCat("layout vllm fuses tensor '", t->name, "' into '", name,
                                                       "': it must be split on dim 0 (column), not ",
                                                       SplitKindName(g.splits[p].kind)));
      }
      if (first == nullptr) {
        first = t;
        continue;
      }
      const bool same_tail = t->shape.size() == first->shape.size() &&
                             std::equal(t->shape.begin() + 1, t->shape.end(), first->shape.begin() + 1);
      const bool first_quantized = layout.For(first->name, first->dtype, first->shape).quantized;
      // Quantized parts may come in different dtypes (all become F8_E4M3); stored ones are stacked as they are.
      if ((t->dtype != first->dtype && !out.quantized) || !same_tail || out.quantized != first_quantized) {
        return absl::InvalidArgumentError(absl::StrCat(
            "layout vllm fuses '", first->name, "' [", absl::StrJoin(first->shape, ", "), "] ",
            kernels::DTypeName(first->dtype), " and '", t->name, "' [", absl::StrJoin(t->shape, ", "), "] ",
            kernels::DTypeName(t->dtype), " into '", name,
            "': parts must share every dimension but the first, whether they are quantized, and (stored) their dtype"));
      }
    }
  }
  return groups;
}

// Rows of the fused output on `rank` before part `part`.
int64_t RowsBefore(const FusedGroup& g, size_t part, uint32_t rank) {
  int64_t rows = 0;
  for (size_t p = 0; p < part; ++p) rows += g.splits[p].length[rank];
  return rows;
}

uint64_t RowBytes(const std::vector<int64_t>& shape, size_t element) {
  uint64_t bytes = element;
  for (size_t d = 1; d < shape.size(); ++d) bytes *= static_cast<uint64_t>(shape[d]);
  return bytes;
}

}  // namespace

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
  const bool vllm = options.layout == v1::LAYOUT_VLLM;
  WEIGHTD_ASSIGN_OR_RETURN(FusedGroups groups, FindFusedGroups(shards, layout, rules, options, tp));

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
      // Declared sizes are untrusted (a pushed shard need not say its size): bounded
      // here, so no sum or offset below can wrap.
      if (t.size() > kMaxPlanBytes || plan.source_bytes + t.size() > kMaxPlanBytes) {
        return absl::InvalidArgumentError(absl::StrCat("tensor '", t.name, "' in shard '", shard.file, "' (",
                                                       t.size(), " bytes) takes the checkpoint past ", kMaxPlanBytes,
                                                       " bytes, more than any device holds"));
      }
      plan.source_bytes += t.size();
      ++plan.source_tensors;
      std::string where = absl::StrCat("in shard '", shard.file, "'");
      WEIGHTD_RETURN_IF_ERROR(claim(t.name, where));
      const TensorOutputs whole = layout.For(t.name, t.dtype, t.shape);
      const bool block = whole.quantized && whole.scheme == kernels::Scheme::kBlock;
      if (tp > 1 && t.dtype == kernels::DType::kF8E4M3) {
        return absl::InvalidArgumentError(absl::StrCat("tensor '", t.name, "' ", where,
                                                       " is already F8_E4M3: checkpoints in FP8 load with tp_size 1 only"));
      }
      const std::optional<FusedPart> fused = vllm ? VllmFusedPart(t.name) : std::nullopt;
      const SplitRule rule = rules.For(t.name);
      const bool padded = vllm && !fused && rule.kind == SplitKind::kVocab && !t.shape.empty();
      TensorTask task;
      if (fused) {
        task.split = groups.at(fused->fused).splits[fused->part];
      } else if (padded) {
        if (whole.quantized) {
          return absl::InvalidArgumentError(absl::StrCat("tensor '", t.name, "' ", where,
                                                         ": layout vllm pads vocab tensors, which must be stored "
                                                         "unquantized (add it to quantization.ignore)"));
        }
        WEIGHTD_ASSIGN_OR_RETURN(task.split, VllmVocabSplit(t.name, t.shape, tp));
      } else {
        WEIGHTD_ASSIGN_OR_RETURN(task.split, SplitTensor(t.name, t.shape, rule, tp, options.heads,
                                                         block ? static_cast<int64_t>(kernels::kBlockSize) : 1));
      }
      if (whole.quantized) {
        task.kind = TaskKind::kQuantize;
        task.scheme = whole.scheme;
        task.reduce_amax = NeedsReduction(whole, task.split, options.scale_scope);
        ++plan.quantized_tensors;
        if (!fused) WEIGHTD_RETURN_IF_ERROR(claim(whole.scale.name, absl::StrCat("the scale of '", t.name, "' ", where)));
      }
      if (fused) {
        FusedGroup& g = groups.at(fused->fused);
        if (g.outputs.empty()) {  // the first part planned: the fused output on every rank
          WEIGHTD_RETURN_IF_ERROR(claim(fused->fused, absl::StrCat("the fusion of ", g.info.members)));
          if (whole.quantized && whole.scheme == kernels::Scheme::kPerTensor) {
            g.fused_scale = static_cast<int>(plan.fused_scales.size());
            plan.fused_scales.push_back({fused->fused, g.parts.size()});
          }
          for (uint32_t r = 0; r < tp; ++r) {
            std::vector<int64_t> shape = t.shape;
            shape[0] = RowsBefore(g, g.parts.size(), r);
            TensorOutputs out = layout.Fused(fused->fused, whole.quantized, t.dtype, shape);
            if (r == 0 && out.quantized) {
              WEIGHTD_RETURN_IF_ERROR(claim(out.scale.name, absl::StrCat("the scale of '", fused->fused, "'")));
            }
            g.outputs.push_back(Append(plan.ranks[r], std::move(out.data), TensorSplit{}, {}));
            g.scales.push_back(out.quantized ? Append(plan.ranks[r], std::move(out.scale), TensorSplit{}, {}) : 0);
          }
        }
        if (whole.quantized && whole.scheme == kernels::Scheme::kPerTensor) {
          task.fused_scale = g.fused_scale;
          task.reduce_amax = options.scale_scope != v1::SCALE_SCOPE_SHARD;  // the whole tensor's amax
        }
        for (uint32_t r = 0; r < tp; ++r) {
          const std::vector<int64_t> slice_shape = task.split.SliceShape(t.shape, r);
          RankPart part;
          part.output = g.outputs[r];
          const int64_t rows_before = RowsBefore(g, fused->part, r);
          part.output_offset = static_cast<uint64_t>(rows_before) *
                               RowBytes(t.shape, whole.quantized ? 1 : kernels::DTypeSize(t.dtype));
          if (whole.quantized) {
            part.scale = g.scales[r];
            part.tiling = layout.For(t.name, t.dtype, slice_shape).tiling;
            const uint64_t tile_rows = part.tiling.tile_rows;
            if (rows_before % tile_rows != 0) {
              return absl::InvalidArgumentError(absl::StrCat(
                  "tensor '", t.name, "' ", where, ": layout vllm places its rank ", r, " rows at row ", rows_before,
                  " of '", fused->fused, "', off the ", tile_rows, "-row grid of the block scheme"));
            }
            if (whole.scheme != kernels::Scheme::kPerTensor) {
              part.scale_offset = rows_before / tile_rows * part.tiling.grid_cols() * sizeof(float);
            }
          }
          task.parts.push_back(part);
        }
      } else {
        for (uint32_t r = 0; r < tp; ++r) {
          std::vector<int64_t> rank_shape = task.split.SliceShape(t.shape, r);
          if (padded) rank_shape[0] = VllmPaddedRowsPerRank(t.shape[0], tp);
          TensorOutputs part = layout.For(t.name, t.dtype, rank_shape);
          if (part.quantized != whole.quantized) {
            return absl::InternalError(absl::StrCat("tensor '", t.name, "': a slice is quantized differently"));
          }
          RankPart rank_part;
          if (padded) {
            const uint64_t row = RowBytes(t.shape, kernels::DTypeSize(t.dtype));
            rank_part.padding_offset = static_cast<uint64_t>(task.split.length[r]) * row;
            rank_part.padding_bytes = part.data.size - rank_part.padding_offset;
          }
          rank_part.output = Append(plan.ranks[r], std::move(part.data), padded ? TensorSplit{} : task.split, t.shape);
          if (whole.quantized) {
            rank_part.scale = Append(plan.ranks[r], std::move(part.scale), TensorSplit{}, {});
            rank_part.tiling = part.tiling;
          }
          task.parts.push_back(rank_part);
        }
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
