// The peers a daemon may contact on its own (--peers): a static list of
// addresses, or a gRPC DNS target ("dns:///weightd-peers.NAMESPACE.svc.cluster.
// local:PORT", a Kubernetes headless Service), whose every address is a peer,
// resolved again on each use so the list follows the fleet. A peer outside the
// list is never contacted unless a request names it. Thread-safe.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "services/peer/peer_channels.h"
#include "weightd/v1/loader.pb.h"

namespace weightd {

class PeerDirectory {
 public:
  // `peers`: comma-separated "host:port" / "unix:/path", or one "dns:///host:port".
  // `instance`: this daemon's instance id (it skips itself in answers).
  static absl::StatusOr<std::unique_ptr<PeerDirectory>> Create(const std::string& peers,
                                                               std::shared_ptr<const PeerChannels> channels,
                                                               std::string instance);

  // The peers now (DNS resolved at this call); empty if the name does not resolve.
  std::vector<std::string> Addresses() const;
  // The peers that hold the model (or are receiving it), asked in parallel with a
  // short deadline: READY ones first, then by fewest serving streams.
  std::vector<std::string> Holders(const v1::FindPeerModelRequest& request) const;

 private:
  PeerDirectory() = default;
  std::vector<std::string> fixed_;
  std::string dns_host_, dns_port_;
  std::shared_ptr<const PeerChannels> channels_;
  std::string instance_;
};

}  // namespace weightd
