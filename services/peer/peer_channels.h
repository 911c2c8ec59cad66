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
#include "absl/time/time.h"

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

  // FAILED_PRECONDITION for a TCP address without --peer-tls-ca. With a
  // `connect_patience`, waits up to that long for the connection (gRPC retries a
  // failed attempt after 0.25 s, then backs off), so a connection refused or reset
  // once does not fail a load; a call on a channel still unconnected then fails
  // with gRPC's own reason. Without it, the first call fails fast.
  absl::StatusOr<std::shared_ptr<grpc::Channel>> Open(const std::string& address,
                                                      absl::Duration connect_patience = absl::ZeroDuration()) const;

 private:
  PeerChannels() = default;
  absl::StatusOr<std::shared_ptr<grpc::Channel>> OpenTls(const std::string& address,
                                                         grpc::ChannelArguments& args) const;
  std::string ca_, cert_, key_, server_name_;
};

}  // namespace weightd
