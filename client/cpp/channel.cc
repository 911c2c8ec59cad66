#include "client/cpp/channel.h"

#include <atomic>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/pem_file.h"
#include "base/status_macros.h"
#include "grpcpp/create_channel.h"

namespace weightd::client {
namespace {

std::string Target(const std::string& address) {
  return absl::StartsWith(address, "/") ? absl::StrCat("unix:", address) : address;
}

}  // namespace

bool IsUnixAddress(const std::string& address) {
  return absl::StartsWith(address, "/") || absl::StartsWith(address, "unix:") ||
         absl::StartsWith(address, "unix-abstract:");
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(const std::string& address,
                                                                                 const TlsOptions& tls) {
  if (IsUnixAddress(address) || !tls.enabled()) return grpc::InsecureChannelCredentials();
  if (tls.key_file.empty() && !tls.cert_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("TLS client certificate '", tls.cert_file, "' has no key file"));
  }
  if (tls.cert_file.empty() && !tls.key_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("TLS client key '", tls.key_file, "' has no certificate file"));
  }
  grpc::SslCredentialsOptions ssl;
  if (!tls.ca_file.empty()) {
    WEIGHTD_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPemFile(tls.ca_file, "TLS CA file"));
  }
  if (!tls.cert_file.empty()) {
    WEIGHTD_ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadPemFile(tls.cert_file, "TLS certificate file"));
    WEIGHTD_ASSIGN_OR_RETURN(ssl.pem_private_key, ReadPemFile(tls.key_file, "TLS key file"));
  }
  return grpc::SslCredentials(ssl);
}

grpc::ChannelArguments ChannelArgumentsFor(const TlsOptions& tls) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  if (!tls.server_name.empty()) args.SetSslTargetNameOverride(tls.server_name);
  return args;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& address, const TlsOptions& tls,
                                                           bool own_connection) {
  static std::atomic<int> next_channel{0};
  WEIGHTD_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> credentials, ChannelCredentialsFor(address, tls));
  grpc::ChannelArguments args = ChannelArgumentsFor(tls);
  if (own_connection) {
    // A distinct argument and a local subchannel pool keep gRPC from sharing the
    // connection with any other channel to the same target.
    args.SetInt("weightd.channel_id", next_channel.fetch_add(1));
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  }
  return grpc::CreateCustomChannel(Target(address), credentials, args);
}

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address, bool own_connection) {
  // Without TLS options nothing is read, so nothing can fail.
  return *MakeChannel(address, TlsOptions{}, own_connection);
}

absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

}  // namespace weightd::client
