#include "services/peer/peer_directory.h"

#include <netdb.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/log.h"
#include "weightd/v1/loader.grpc.pb.h"

namespace weightd {

absl::StatusOr<std::unique_ptr<PeerDirectory>> PeerDirectory::Create(const std::string& peers,
                                                                     std::shared_ptr<const PeerChannels> channels,
                                                                     std::string instance) {
  std::unique_ptr<PeerDirectory> d(new PeerDirectory());
  d->channels_ = std::move(channels);
  d->instance_ = std::move(instance);
  absl::string_view rest = peers;
  if (absl::ConsumePrefix(&rest, "dns:///") || absl::ConsumePrefix(&rest, "dns:")) {
    const size_t colon = rest.rfind(':');
    if (colon == absl::string_view::npos || colon == 0 || colon + 1 == rest.size()) {
      return absl::InvalidArgumentError(absl::StrCat("--peers=", peers, ": a DNS target needs host:port"));
    }
    d->dns_host_ = std::string(rest.substr(0, colon));
    d->dns_port_ = std::string(rest.substr(colon + 1));
    return d;
  }
  for (absl::string_view a : absl::StrSplit(peers, ',', absl::SkipWhitespace())) {
    std::string address(absl::StripAsciiWhitespace(a));
    if (!absl::StartsWith(address, "unix:") && address.find(':') == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("--peers: '", address, "' is not host:port or unix:/path"));
    }
    d->fixed_.push_back(std::move(address));
  }
  return d;
}

std::vector<std::string> PeerDirectory::Addresses() const {
  if (dns_host_.empty()) return fixed_;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  std::vector<std::string> out;
  if (::getaddrinfo(dns_host_.c_str(), dns_port_.c_str(), &hints, &found) != 0) {
    LogEvent(LogLevel::kWarning, "peers_unresolved", {{"name", dns_host_}});
    return out;
  }
  std::set<std::string> seen;
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    char host[INET6_ADDRSTRLEN] = {};
    if (a->ai_family == AF_INET) {
      ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr, host, sizeof(host));
      if (seen.insert(host).second) out.push_back(absl::StrCat("ipv4:", host, ":", dns_port_));
    } else if (a->ai_family == AF_INET6) {
      ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr, host, sizeof(host));
      if (seen.insert(host).second) out.push_back(absl::StrCat("ipv6:[", host, "]:", dns_port_));
    }
  }
  ::freeaddrinfo(found);
  return out;
}

std::vector<std::string> PeerDirectory::Holders(const v1::FindPeerModelRequest& request) const {
  struct Answer {
    std::string address;
    v1::FindPeerModelResponse response;
    bool ok = false;
  };
  std::vector<std::future<Answer>> asked;
  for (const std::string& address : Addresses()) {
    asked.push_back(std::async(std::launch::async, [this, address, &request] {
      Answer answer{address, {}, false};
      auto channel = channels_->Open(address);
      if (!channel.ok()) return answer;
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
      answer.ok = v1::Loader::NewStub(*channel)->FindPeerModel(&context, request, &answer.response).ok();
      return answer;
    }));
  }
  std::vector<Answer> holders;
  for (auto& f : asked) {
    Answer a = f.get();
    if (a.ok && a.response.found() && a.response.instance() != instance_) holders.push_back(std::move(a));
  }
  std::stable_sort(holders.begin(), holders.end(), [](const Answer& x, const Answer& y) {
    const bool xr = x.response.state() == v1::MODEL_STATE_READY, yr = y.response.state() == v1::MODEL_STATE_READY;
    if (xr != yr) return xr;
    return x.response.serving_streams() < y.response.serving_streams();
  });
  std::vector<std::string> out;
  for (Answer& a : holders) out.push_back(std::move(a.address));
  return out;
}

}  // namespace weightd
