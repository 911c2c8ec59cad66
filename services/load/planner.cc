#include "services/load/planner.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "services/device/device_backend.h"

namespace weightd {
namespace {

size_t Append(RankPlan& rank, OutputSpec spec) {
  OutputTensor out{std::move(spec.name), spec.dtype, std::move(spec.shape), RoundUp(rank.used_bytes, kTensorAlignment),
                   spec.size};
  rank.used_bytes = out.offset + out.size;
  rank.tensors.push_back(std::move(out));
  return rank.tensors.size() - 1;
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
  if (options.devices.size() != 1) {
    return absl::UnimplementedError(absl::StrCat(
        "tensor parallelism (tp_size ", options.devices.size(), ") is not available in this build"));
  }
  WEIGHTD_ASSIGN_OR_RETURN(OutputLayout layout, OutputLayout::Create(options.scheme, options.ignore));

  LoadPlan plan;
  RankPlan rank;
  rank.rank = 0;
  rank.device = options.devices[0];
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
      TensorTask task;
      TensorOutputs outputs = layout.For(t.name, t.dtype, t.shape);
      if (outputs.quantized) {
        WEIGHTD_RETURN_IF_ERROR(
            claim(outputs.scale.name, absl::StrCat("the scale of '", t.name, "' ", where)));
        task.kind = TaskKind::kQuantize;
        task.scheme = outputs.scheme;
        task.tiling = outputs.tiling;
        task.output = Append(rank, std::move(outputs.data));
        task.scale = Append(rank, std::move(outputs.scale));
        ++plan.quantized_tensors;
      } else {
        task.output = Append(rank, std::move(outputs.data));
      }
      if (auto module = layout.IgnoredModule(t.name, t.dtype, t.shape)) plan.ignored_modules.push_back(*module);
      plan.tasks[s].push_back(task);
    }
  }
  if (rank.device < 0 || static_cast<size_t>(rank.device) >= options.device_granularity.size()) {
    return absl::InvalidArgumentError(absl::StrCat("device ", rank.device, " does not exist (",
                                                   options.device_granularity.size(), " devices)"));
  }
  rank.arena_bytes = RoundUp(std::max<uint64_t>(rank.used_bytes, 1), options.device_granularity[rank.device]);
  plan.ranks.push_back(std::move(rank));
  return plan;
}

}  // namespace weightd
