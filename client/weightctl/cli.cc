#include <cstdio>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "client/weightctl/cli.h"

namespace weightd::ctl {

int ReportError(const absl::Status& status) {
  std::fprintf(stderr, "weightctl: %s: %s\n", absl::StatusCodeToString(status.code()).c_str(),
               std::string(status.message()).c_str());
  return 1;
}

int Usage(const std::string& text) {
  std::fprintf(stderr, "weightctl: usage: %s\n", text.c_str());
  return 2;
}

absl::StatusOr<v1::Scheme> ParseScheme(const std::string& scheme) {
  if (scheme == "per-tensor") return v1::SCHEME_PER_TENSOR;
  if (scheme == "per-channel") return v1::SCHEME_PER_CHANNEL;
  if (scheme == "block") return v1::SCHEME_BLOCK;
  if (scheme == "none") return v1::SCHEME_NONE;
  return absl::InvalidArgumentError(absl::StrCat("--scheme=", scheme, ": use per-tensor, per-channel, block or none"));
}

absl::StatusOr<v1::NonFinite> ParseNonFinite(const std::string& nonfinite) {
  if (nonfinite == "fail") return v1::NONFINITE_FAIL;
  if (nonfinite == "saturate") return v1::NONFINITE_SATURATE;
  return absl::InvalidArgumentError(absl::StrCat("--nonfinite=", nonfinite, ": use fail or saturate"));
}

absl::StatusOr<v1::ScaleScope> ParseScaleScope(const std::string& scope) {
  if (scope == "tensor") return v1::SCALE_SCOPE_TENSOR;
  if (scope == "shard") return v1::SCALE_SCOPE_SHARD;
  return absl::InvalidArgumentError(absl::StrCat("--scale-scope=", scope, ": use tensor or shard"));
}

absl::StatusOr<v1::Layout> ParseLayout(const std::string& layout) {
  if (layout == "checkpoint") return v1::LAYOUT_CHECKPOINT;
  if (layout == "vllm") return v1::LAYOUT_VLLM;
  return absl::InvalidArgumentError(absl::StrCat("--layout=", layout, ": use checkpoint or vllm"));
}

absl::StatusOr<client::PushTransport> ParsePushTransport(const std::string& transport) {
  if (transport == "auto") return client::PushTransport::kAuto;
  if (transport == "grpc") return client::PushTransport::kGrpc;
  return absl::InvalidArgumentError(absl::StrCat("--push-transport=", transport, ": use auto or grpc"));
}

}  // namespace weightd::ctl
