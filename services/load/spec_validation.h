// Checks a LoadModelRequest before anything is created for it, and brings it to
// one canonical form so that equivalent specs compare equal. Thread-safe (pure
// functions).
#pragma once

#include "absl/status/status.h"
#include "weightd/v1/loader.pb.h"

namespace weightd {

// INVALID_ARGUMENT naming the field (unknown enum values, malformed ignore
// patterns or sharding rules, a device list that does not match tp_size or
// names a device twice); UNIMPLEMENTED for what this build does not have (peer
// sources). Everything a load could
// refuse from the request alone is refused here, before the model is LOADING.
absl::Status ValidateLoadSpec(const v1::LoadModelRequest& spec);

// The spec with defaults spelled out: SCHEME_UNSPECIFIED -> SCHEME_PER_TENSOR,
// SCALE_SCOPE_UNSPECIFIED -> SCALE_SCOPE_TENSOR, NONFINITE_UNSPECIFIED ->
// NONFINITE_FAIL, tp_size 0 -> 1, no devices -> devices 0 .. tp_size-1. The
// registry compares and stores normalized specs (idempotent LoadModel).
v1::LoadModelRequest NormalizeSpec(const v1::LoadModelRequest& spec);

}  // namespace weightd
