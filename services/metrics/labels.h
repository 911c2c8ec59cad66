// The label values that metrics and structured logs share, so a log line and a
// time series of the same load say the same thing: source kind, scheme and
// status code. Pure functions; thread-safe.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "weightd/v1/loader.pb.h"

namespace weightd {

// "path", "push", "peer", or "none" (a request without a source).
inline std::string SourceLabel(const v1::ModelSource& source) {
  switch (source.kind_case()) {
    case v1::ModelSource::kPath: return "path";
    case v1::ModelSource::kPush: return "push";
    case v1::ModelSource::kPeer: return "peer";
    case v1::ModelSource::KIND_NOT_SET: break;
  }
  return "none";
}

// The spelling of the CLI's --scheme: "per-tensor" (also for UNSPECIFIED, its default),
// "per-channel", "block", "none".
inline std::string SchemeLabel(v1::Scheme scheme) {
  switch (scheme) {
    case v1::SCHEME_UNSPECIFIED:
    case v1::SCHEME_PER_TENSOR: return "per-tensor";
    case v1::SCHEME_PER_CHANNEL: return "per-channel";
    case v1::SCHEME_BLOCK: return "block";
    case v1::SCHEME_NONE: return "none";
    default: break;
  }
  return "unknown";
}

// "ok", or the canonical code name ("DATA_LOSS").
inline std::string ResultLabel(const absl::Status& status) {
  return status.ok() ? "ok" : absl::StatusCodeToString(status.code());
}

}  // namespace weightd
