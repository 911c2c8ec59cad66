// gRPC channels to a weightd daemon and the conversion of its statuses back to
// absl::Status (the client's side of the one boundary conversion).
// Thread-safe (pure functions; channels are thread-safe).
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "grpcpp/channel.h"
#include "grpcpp/support/status.h"

namespace weightd::client {

// Largest gRPC message either side accepts; the daemon uses the same figure.
inline constexpr int kMaxMessageBytes = 64 << 20;

// `address`: "unix:/path", "unix:///path", "host:port" or "dns:...". A bare path
// ("/run/weightd/weightd.sock") is taken as a Unix socket.
// `own_connection`: a channel with its own HTTP/2 connection; parallel push
// streams need one each, since streams on one connection share its window.
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address, bool own_connection = false);

absl::Status FromGrpc(const grpc::Status& status);

}  // namespace weightd::client
