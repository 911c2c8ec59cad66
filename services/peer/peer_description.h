// The first message of a peer stream: the served model as its checkpoint's
// shard headers, config.json, quantization and items (PeerModel), built by the
// serving daemon and read back, validated, by the receiving one; and the rules
// that say whether a receiver's load can take a peer's bytes as they are.
// Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "services/load/planner.h"
#include "services/peer/peer_items.h"
#include "services/safetensors/header.h"
#include "weightd/v1/loader.pb.h"

namespace weightd {

// The header JSON of a shard as the parser reads it back (same tensors, order,
// data offsets and metadata).
std::string HeaderJsonOf(const safetensors::ShardHeader& header);

// Lowercase hex SHA-256 over every shard's file name and header JSON, then
// config.json: the same checkpoint gives the same digest on every node.
std::string SourceDigest(const std::vector<ShardInput>& shards, const std::string& config_json);

// `spec`: the serving load's, normalized (services/load/spec_validation.h).
v1::PeerModel DescribeModel(const std::string& model_id, const v1::LoadModelRequest& spec,
                            const std::vector<ShardInput>& shards, const std::string& config_json,
                            const std::vector<PeerItemRef>& items);

// What a receiver plans from.
struct PeerCheckpoint {
  std::vector<ShardInput> shards;
  std::string config_json;
};

// A description from the wire: shard names (unique, no '/'), headers (the
// safetensors parser under `limits`), and the digest. INVALID_ARGUMENT naming
// the peer (`from`) and what is wrong; DATA_LOSS when the digest does not match.
absl::StatusOr<PeerCheckpoint> ReadDescription(const v1::PeerModel& model, const safetensors::ParseLimits& limits,
                                               const std::string& from);

// Whether a load with `spec` (normalized) can place the peer's bytes without
// quantizing again: the same quantization (scheme, ignore list, scale scope,
// non-finite policy) and, under scale scope `shard`, tp_size 1 on both sides.
// FAILED_PRECONDITION naming both sides.
absl::Status CheckPeerCompatible(const v1::PeerModel& peer, const v1::LoadModelRequest& spec, const std::string& from);

// Whether the items a receiver derived equal the peer's (names, sizes, order).
// FAILED_PRECONDITION naming the first difference.
absl::Status CheckSameItems(const v1::PeerModel& peer, const std::vector<PeerItemRef>& items, const std::string& from);

}  // namespace weightd
