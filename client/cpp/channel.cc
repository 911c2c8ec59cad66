#include "client/cpp/channel.h"

#include <atomic>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace weightd::client {

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address, bool own_connection) {
  static std::atomic<int> next_channel{0};
  std::string target = address;
  if (absl::StartsWith(target, "/")) target = absl::StrCat("unix:", target);
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  if (own_connection) {
    // A distinct argument and a local subchannel pool keep gRPC from sharing the
    // connection with any other channel to the same target.
    args.SetInt("weightd.channel_id", next_channel.fetch_add(1));
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  }
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

}  // namespace weightd::client
