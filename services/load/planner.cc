#include "services/load/planner.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "services/device/device_backend.h"

namespace weightd {
namespace {

size_t Append(RankPlan& rank, std::string name, kernels::DType dtype, std::vector<int64_t> shape,
              uint64_t size) {
  OutputTensor out{std::move(name), dtype, std::move(shape), RoundUp(rank.used_bytes, kTensorAlignment), size};
  rank.used_bytes = out.offset + out.size;
  rank.tensors.push_back(std::move(out));
  return rank.tensors.size() - 1;
}

uint64_t Elements(const std::vector<int64_t>& shape) {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
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
  bool quantize = true;
  switch (options.scheme) {
    case v1::SCHEME_UNSPECIFIED:
    case v1::SCHEME_PER_TENSOR:
      break;
    case v1::SCHEME_NONE:
      quantize = false;
      break;
    default:
      return absl::UnimplementedError(
          absl::StrCat("quantization scheme ", v1::Scheme_Name(options.scheme),
                       " is not available in this build; use SCHEME_PER_TENSOR or SCHEME_NONE"));
  }
  if (options.devices.size() != 1) {
    return absl::UnimplementedError(absl::StrCat(
        "tensor parallelism (tp_size ", options.devices.size(), ") is not available in this build"));
  }
  WEIGHTD_ASSIGN_OR_RETURN(TensorSelection selection, TensorSelection::Create(quantize, options.ignore));

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
      if (selection.ShouldQuantize(t.name, t.dtype, t.shape)) {
        std::string scale_name = t.name + "_scale";
        WEIGHTD_RETURN_IF_ERROR(claim(scale_name, absl::StrCat("the scale of '", t.name, "' ", where)));
        task.kind = TaskKind::kQuantizePerTensor;
        task.output = Append(rank, t.name, kernels::DType::kF8E4M3, t.shape, Elements(t.shape));
        task.scale = Append(rank, scale_name, kernels::DType::kF32, {}, sizeof(float));
        ++plan.quantized_tensors;
      } else {
        task.output = Append(rank, t.name, t.dtype, t.shape, t.size());
      }
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
