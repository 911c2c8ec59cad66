// Certificates for the TLS tests, made with the openssl command in a directory: a
// CA; a server certificate for "localhost" and a client certificate, both signed
// by it; and a client certificate that signs itself (no CA of the daemon's trusts
// it). EC P-256 keys, valid for a day. Not thread-safe: one call per directory.
#pragma once

#include <string>

namespace weightd::testing {

struct TlsFiles {
  std::string ca;  // the CA certificate: the daemon's --tls-client-ca, the clients' --tls-ca
  std::string server_cert, server_key;
  std::string client_cert, client_key;
  std::string untrusted_cert, untrusted_key;  // self-signed
};

// Throws std::runtime_error with openssl's output when a certificate cannot be made.
TlsFiles MakeTlsFiles(const std::string& dir);

}  // namespace weightd::testing
