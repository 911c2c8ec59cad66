#include "bench/gen/gen_flags.h"

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/dashed_flags.h"
#include "base/status_macros.h"
#include "base/resident_buffers.h"

ABSL_FLAG(std::string, preset, "tiny", "model shape: tiny, small, 8b or 70b, e.g. --preset=8b");
ABSL_FLAG(int, shards, 1, "number of safetensors files, e.g. --shards=4");
ABSL_FLAG(std::string, dtype, "bf16", "bf16, f16, f32, or mixed (BF16/F16/F32 by tensor), e.g. --dtype=bf16");
ABSL_FLAG(uint64_t, seed, 0, "seed of the synthetic values, e.g. --seed=7");
ABSL_FLAG(int, layers, 0, "override the preset's number of layers (0: keep), e.g. --preset=8b --layers=4");
ABSL_FLAG(std::string, fill, "exact",
          "exact (every value drawn) or fast (a drawn block per tensor, rotated: memcpy speed), e.g. --fill=fast");

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

}  // namespace

absl::StatusOr<GenOptions> GenOptionsFromFlags() {
  GenOptions options;
  WEIGHTD_ASSIGN_OR_RETURN(options.config, LlamaConfig::Preset(absl::GetFlag(FLAGS_preset)));
  if (absl::GetFlag(FLAGS_layers) > 0) options.config.num_layers = absl::GetFlag(FLAGS_layers);
  options.shards = absl::GetFlag(FLAGS_shards);
  options.seed = absl::GetFlag(FLAGS_seed);
  WEIGHTD_RETURN_IF_ERROR(ApplyDtype(absl::GetFlag(FLAGS_dtype), options));
  const std::string fill = absl::GetFlag(FLAGS_fill);
  if (fill != "exact" && fill != "fast") {
    return absl::InvalidArgumentError(absl::StrCat("--fill must be exact or fast, got \"", fill, "\""));
  }
  options.fast_fill = fill == "fast";
  return options;
}

int GenToolMain(const char* tool, int argc, char** argv, absl::Status (*run)()) {
  weightd::KeepLargeBuffersResident();
  std::vector<std::string> storage;
  std::vector<char*> args = AcceptDashedFlags(argc, argv, storage);
  const std::vector<char*> rest = absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  if (rest.size() > 1) {
    std::fprintf(stderr, "%s: unexpected argument \"%s\"\n", tool, rest[1]);
    return 1;
  }
  const absl::Status status = run();
  if (!status.ok()) {
    std::fprintf(stderr, "%s: %s\n", tool, status.ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace weightd::bench
