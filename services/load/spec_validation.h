// Checks a LoadModelRequest before anything is created for it. Thread-safe.
#pragma once

#include "absl/status/status.h"
#include "weightd/v1/loader.pb.h"

namespace weightd {

// INVALID_ARGUMENT naming the field, UNIMPLEMENTED for sources not built yet.
absl::Status ValidateLoadSpec(const v1::LoadModelRequest& spec);

}  // namespace weightd
