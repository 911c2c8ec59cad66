// Pushes one local shard file into a daemon's load, in 4 MiB messages read
// straight from the file: on a Unix socket over the daemon's raw push connection
// (kAuto), else (or where the daemon takes none, or with kGrpc) over the
// PushShards stream on its own HTTP/2 connection.
// Thread-safe: each call is independent (loads push their shards in parallel).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "client/cpp/channel.h"
#include "client/cpp/shard_stream.h"
#include "weightd/v1/loader.pb.h"

namespace weightd::ctl {

// `shard_name`: the file name the load expects (as in PushSource.shard_files).
absl::StatusOr<v1::PushSummary> PushShardFile(const std::string& address, const client::TlsOptions& tls,
                                              const std::string& model_id, const std::string& file_path,
                                              const std::string& shard_name,
                                              client::PushTransport transport = client::PushTransport::kAuto);

}  // namespace weightd::ctl
