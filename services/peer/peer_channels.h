// Connections from this daemon to its peers: a Unix socket on the same node
// ("unix:/path"), or TCP with mutual TLS (the daemon's own certificate and key,
// and the CA its peers' certificates are signed by: --peer-tls-*). Plain TCP is
// never used. Each call opens a channel with its own connection, so parallel
// streams do not share one HTTP/2 window. Thread-safe after Create.
#pragma once

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"

namespace weightd {

struct PeerTlsOptions {
  std::string ca_file;      // PEM: the CA that signed the peers' certificates
  std::string cert_file;    // PEM: this daemon's certificate chain
  std::string key_file;     // PEM: its private key
  std::string server_name;  // the name peers' certificates must carry; empty: the address's host
};

class PeerChannels {
 public:
  // Reads the PEM files (INVALID_ARGUMENT naming one that cannot be read; the
  // certificate and key go together). Without a CA, only Unix-socket peers work.
  static absl::StatusOr<std::shared_ptr<PeerChannels>> Create(const PeerTlsOptions& tls);

  // FAILED_PRECONDITION for a TCP address without --peer-tls-ca.
  absl::StatusOr<std::shared_ptr<grpc::Channel>> Open(const std::string& address) const;

 private:
  PeerChannels() = default;
  std::string ca_, cert_, key_, server_name_;
};

}  // namespace weightd
