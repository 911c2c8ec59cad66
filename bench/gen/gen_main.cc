// weightd-gen: writes a deterministic synthetic Llama checkpoint for tests and benchmarks.
//
//   weightd-gen --preset tiny --out DIR [--shards N] [--dtype bf16|f16|f32|mixed] [--seed S]
//               [--fill exact|fast] [--layers L]
//   weightd-gen --preset 70b --plan     prints every tensor's name, dtype and shape (JSON lines)

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "bench/gen/gen_flags.h"
#include "bench/gen/write_checkpoint.h"

ABSL_FLAG(std::string, out, "", "output directory (created if missing), e.g. --out=/tmp/tiny");
ABSL_FLAG(bool, plan, false, "print the tensors (JSON lines) instead of writing, e.g. --plan");

namespace weightd::bench {
namespace {

void PrintPlan(const CheckpointPlan& plan) {
  for (const PlannedTensor& t : plan.tensors) {
    std::string shape;
    for (int64_t d : t.desc.shape) absl::StrAppend(&shape, shape.empty() ? "" : ",", d);
    std::printf("{\"name\":\"%s\",\"dtype\":\"%s\",\"shape\":[%s]}\n", t.desc.name.c_str(),
                std::string(kernels::DTypeName(t.dtype)).c_str(), shape.c_str());
  }
}

absl::Status Run() {
  WEIGHTD_ASSIGN_OR_RETURN(GenOptions options, GenOptionsFromFlags());
  options.out_dir = absl::GetFlag(FLAGS_out);
  const bool plan_only = absl::GetFlag(FLAGS_plan);
  if (plan_only && options.out_dir.empty()) options.out_dir.assign(1, '-');  // planning writes nothing
  if (options.out_dir.empty()) return absl::InvalidArgumentError("--out is required");
  WEIGHTD_ASSIGN_OR_RETURN(const CheckpointPlan plan, PlanCheckpoint(options));
  if (plan_only) {
    PrintPlan(plan);
    return absl::OkStatus();
  }
  WEIGHTD_RETURN_IF_ERROR(WriteCheckpoint(options));
  // config.json, the shards, and the index when there is more than one shard.
  const size_t files = 1 + plan.files.size() + (plan.files.size() > 1 ? 1 : 0);
  std::printf("weightd-gen: preset=%s tensors=%zu bytes=%llu files=%zu out=%s\n",
              options.config.name.c_str(), plan.tensors.size(),
              static_cast<unsigned long long>(plan.total_bytes), files, options.out_dir.c_str());
  return absl::OkStatus();
}

}  // namespace
}  // namespace weightd::bench

int main(int argc, char** argv) { return weightd::bench::GenToolMain("weightd-gen", argc, argv, weightd::bench::Run); }
