// weightd-gen: writes a deterministic synthetic Llama checkpoint for tests and benchmarks.
//
//   weightd-gen --preset tiny --out DIR [--shards N] [--dtype bf16|f16|f32|mixed] [--seed S]

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "bench/gen/write_checkpoint.h"

ABSL_FLAG(std::string, preset, "tiny", "model shape: tiny, small, 8b or 70b");
ABSL_FLAG(std::string, out, "", "output directory (created if missing)");
ABSL_FLAG(int, shards, 1, "number of safetensors files");
ABSL_FLAG(std::string, dtype, "bf16", "bf16, f16, f32, or mixed (BF16/F16/F32 by tensor)");
ABSL_FLAG(uint64_t, seed, 0, "seed of the synthetic values");
ABSL_FLAG(int, layers, 0, "override the preset's number of layers (0: keep), e.g. --preset=8b --layers=4");

namespace weightd::bench {
namespace {

absl::Status ApplyDtype(const std::string& name, GenOptions& options) {
  if (name == "bf16") {
    options.dtype = kernels::DType::kBF16;
  } else if (name == "f16") {
    options.dtype = kernels::DType::kF16;
  } else if (name == "f32") {
    options.dtype = kernels::DType::kF32;
  } else if (name == "mixed") {
    options.mixed_dtypes = true;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--dtype must be bf16, f16, f32 or mixed, got \"", name, "\""));
  }
  return absl::OkStatus();
}

absl::Status Run() {
  GenOptions options;
  WEIGHTD_ASSIGN_OR_RETURN(options.config, LlamaConfig::Preset(absl::GetFlag(FLAGS_preset)));
  if (absl::GetFlag(FLAGS_layers) > 0) options.config.num_layers = absl::GetFlag(FLAGS_layers);
  options.out_dir = absl::GetFlag(FLAGS_out);
  if (options.out_dir.empty()) return absl::InvalidArgumentError("--out is required");
  options.shards = absl::GetFlag(FLAGS_shards);
  options.seed = absl::GetFlag(FLAGS_seed);
  WEIGHTD_RETURN_IF_ERROR(ApplyDtype(absl::GetFlag(FLAGS_dtype), options));
  WEIGHTD_ASSIGN_OR_RETURN(const CheckpointPlan plan, PlanCheckpoint(options));
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

int main(int argc, char** argv) {
  const std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "weightd-gen: unexpected argument \"%s\"\n", rest[1]);
    return 1;
  }
  const absl::Status status = weightd::bench::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "weightd-gen: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
