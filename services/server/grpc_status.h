// The one place where absl::Status becomes grpc::Status (the RPC boundary).
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace weightd {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace weightd
