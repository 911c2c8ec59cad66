#include "services/peer/peer_channels.h"

#include <atomic>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/pem_file.h"

namespace weightd {

absl::StatusOr<std::shared_ptr<PeerChannels>> PeerChannels::Create(const PeerTlsOptions& tls) {
  std::shared_ptr<PeerChannels> channels(new PeerChannels());
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return absl::InvalidArgumentError("--peer-tls-cert and --peer-tls-key go together");
  }
  if (!tls.ca_file.empty()) {
    auto ca = ReadPemFile(tls.ca_file, "--peer-tls-ca");
    if (!ca.ok()) return ca.status();
    channels->ca_ = std::move(*ca);
  }
  if (!tls.cert_file.empty()) {
    auto cert = ReadPemFile(tls.cert_file, "--peer-tls-cert");
    if (!cert.ok()) return cert.status();
    auto key = ReadPemFile(tls.key_file, "--peer-tls-key");
    if (!key.ok()) return key.status();
    channels->cert_ = std::move(*cert);
    channels->key_ = std::move(*key);
  }
  channels->server_name_ = tls.server_name;
  return channels;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> PeerChannels::Open(const std::string& address,
                                                                  absl::Duration connect_patience) const {
  static std::atomic<int> next_channel{0};
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  args.SetInt("weightd.peer_channel", next_channel.fetch_add(1));
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // A peer that vanishes without closing the connection is noticed within seconds.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 250);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  std::shared_ptr<grpc::Channel> channel;
  if (absl::StartsWith(address, "unix:")) {
    channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  } else {
    auto tcp = OpenTls(address, args);
    if (!tcp.ok()) return tcp.status();
    channel = *std::move(tcp);
  }
  if (connect_patience > absl::ZeroDuration()) channel->WaitForConnected(absl::ToChronoTime(absl::Now() + connect_patience));
  return channel;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> PeerChannels::OpenTls(const std::string& address,
                                                                     grpc::ChannelArguments& args) const {
  if (ca_.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "peer ", address, " is reached over TCP, which weightd uses only with mutual TLS: start the daemon with "
        "--peer-tls-ca, --peer-tls-cert and --peer-tls-key (or name a unix: socket on this node)"));
  }
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ca_;
  ssl.pem_cert_chain = cert_;
  ssl.pem_private_key = key_;
  if (!server_name_.empty()) args.SetSslTargetNameOverride(server_name_);
  return grpc::CreateCustomChannel(address, grpc::SslCredentials(ssl), args);
}

}  // namespace weightd
