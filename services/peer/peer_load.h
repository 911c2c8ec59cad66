// Drives a load from peers (PeerSource, or a path load that prefers peers):
// asks the first peer that answers for the model's description, checks that its
// bytes can be placed here as they are (same quantization; services/peer/
// peer_description.h), hands the shard headers to the job, which plans for this
// daemon's devices and tp_size and admits the model before any byte, then pulls
// the items over parallel streams (disjoint runs of whole tensors) and places
// them without quantizing again. Every item's CRC-32C is checked before its
// tensor counts as landed; landed tensors are served on at once (relay). A
// stream that fails resumes on the next peer named, from its first tensor not
// yet landed; with none left the load fails and its memory is freed. Runs on a
// loader thread; blocks until the load has finished or failed.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "services/load/load_job.h"
#include "services/peer/peer_channels.h"
#include "services/peer/servable_model.h"
#include "services/safetensors/header.h"

namespace weightd {

struct PeerLoadOptions {
  std::vector<std::string> addresses;  // the peer first, then the fallbacks
  std::string peer_model_id;           // the model's id on the peers
  uint32_t streams = 4;
  std::shared_ptr<const PeerChannels> channels;
  safetensors::ParseLimits limits;
  // A path load that prefers peers: the local files' headers and config.json,
  // which the peer's description must equal (else the files are read instead).
  const std::vector<ShardInput>* expected_shards = nullptr;
  std::string expected_config_json;
  // Called once planned, with the model as this daemon serves it while it arrives.
  std::function<void(std::shared_ptr<ServableModel>)> relay;
  std::function<void()> progress;                                          // as bytes and tensors land
  std::function<void(const std::string& address, uint64_t bytes)> received;  // item bytes from a peer
};

// The outcome goes to the job (and its registry) as for any load. Returns the
// address the model's description came from ("" if none answered).
std::string RunPeerLoad(std::shared_ptr<LoadJob> job, const PeerLoadOptions& options);

}  // namespace weightd
