// The checkpoint-shape flags weightd-gen and weightd-push-gen share: --preset,
// --layers, --shards, --dtype, --fill, --seed.
#pragma once

#include "absl/status/statusor.h"
#include "bench/gen/write_checkpoint.h"

namespace weightd::bench {

// GenOptions from the flags, out_dir left empty. INVALID_ARGUMENT or NOT_FOUND
// for a bad value.
absl::StatusOr<GenOptions> GenOptionsFromFlags();

// main() of a generator tool: parses the flags (dashed names too), refuses
// positional arguments, runs `run`, prints its error as "tool: status". Exit code.
int GenToolMain(const char* tool, int argc, char** argv, absl::Status (*run)());

}  // namespace weightd::bench
