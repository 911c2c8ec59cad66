// gRPC channels to a weightd daemon and the conversion of its statuses back to
// absl::Status (the client's side of the one boundary conversion). The channel
// credentials are shared with the daemon's own connections to its peers.
// Thread-safe (pure functions; channels are thread-safe).
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "grpcpp/support/status.h"

namespace weightd::client {

// Largest gRPC message either side accepts; the daemon uses the same figure.
inline constexpr int kMaxMessageBytes = 64 << 20;

// TLS towards a TCP address; Unix sockets never use it (the daemon checks the
// peer's uid there). Every field empty: plain TCP, for a daemon run with
// --insecure-tcp. Any field set: TLS.
struct TlsOptions {
  std::string ca_file;    // PEM roots that signed the daemon's certificate; empty: the system's roots
  std::string cert_file;  // PEM certificate chain of this client (mutual TLS), with key_file
  std::string key_file;   // PEM private key of cert_file
  // The name the daemon's certificate must carry, when it is not the host dialed
  // (a certificate for "weightd.example" reached at 10.0.0.7:9500); empty: the host.
  std::string server_name;

  bool enabled() const { return !ca_file.empty() || !cert_file.empty() || !key_file.empty() || !server_name.empty(); }
};

// "unix:/path", "unix:///path", "unix-abstract:name" or a bare "/path" (taken as
// "unix:/path"): a Unix socket.
bool IsUnixAddress(const std::string& address);

// Insecure credentials for a Unix socket, or for TCP without TLS options; SSL
// credentials (with a client certificate when cert_file is set) for TCP with them.
// INVALID_ARGUMENT naming the file for a file that cannot be read, and for a
// certificate without its key or a key without its certificate.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(const std::string& address,
                                                                                 const TlsOptions& tls);

// The message size limits, and the TLS target name when tls.server_name is set.
grpc::ChannelArguments ChannelArgumentsFor(const TlsOptions& tls);

// `address`: "unix:/path", "unix:///path", "host:port" or "dns:...". A bare path
// ("/run/weightd/weightd.sock") is taken as a Unix socket.
// `own_connection`: a channel with its own HTTP/2 connection; parallel push
// streams need one each, since streams on one connection share its window.
// Errors as ChannelCredentialsFor.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& address, const TlsOptions& tls,
                                                           bool own_connection = false);
// Without TLS (a Unix socket, or TCP to a daemon run with --insecure-tcp).
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address, bool own_connection = false);

absl::Status FromGrpc(const grpc::Status& status);

}  // namespace weightd::client
