#include "services/load/spec_validation.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "services/load/output_layout.h"
#include "services/load/sharding_rules.h"

namespace weightd {
namespace {

constexpr size_t kMaxModelIdBytes = 256;
constexpr uint32_t kMaxTpSize = 64;
constexpr int kMaxPeerAddresses = 16;
constexpr uint32_t kMaxPeerStreams = 64;

bool ValidModelIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == '/' || c == ':' || c == '@';
}

absl::Status ValidateQuantization(const v1::Quantization& q) {
  if (!v1::Scheme_IsValid(q.scheme())) {
    return absl::InvalidArgumentError(absl::StrCat("quantization.scheme ", q.scheme(), " is unknown"));
  }
  if (!v1::ScaleScope_IsValid(q.scale_scope())) {
    return absl::InvalidArgumentError(absl::StrCat("quantization.scale_scope ", q.scale_scope(), " is unknown"));
  }
  if (!v1::NonFinite_IsValid(q.nonfinite())) {
    return absl::InvalidArgumentError(absl::StrCat("quantization.nonfinite ", q.nonfinite(), " is unknown"));
  }
  // Compiles the ignore patterns: a malformed one is refused now, not at plan time.
  return OutputLayout::Create(q.scheme(), {q.ignore().begin(), q.ignore().end()}).status();
}

absl::Status ValidatePlacement(const v1::Placement& p) {
  const uint32_t tp = p.tp_size() == 0 ? 1 : p.tp_size();
  if (tp > kMaxTpSize) {
    return absl::InvalidArgumentError(absl::StrCat("placement.tp_size ", tp, " is more than ", kMaxTpSize));
  }
  if (p.devices_size() != 0 && static_cast<uint32_t>(p.devices_size()) != tp) {
    return absl::InvalidArgumentError(
        absl::StrCat("placement.devices lists ", p.devices_size(), " devices for tp_size ", tp));
  }
  std::set<uint32_t> seen;
  for (uint32_t device : p.devices()) {
    if (!seen.insert(device).second) {
      return absl::InvalidArgumentError(absl::StrCat("placement.devices lists device ", device, " twice"));
    }
  }
  if (!v1::Layout_IsValid(p.layout())) {
    return absl::InvalidArgumentError(absl::StrCat("placement.layout ", p.layout(), " is unknown"));
  }
  // Compiles the rules' patterns: a malformed one is refused now, not at plan time.
  return ShardingRules::Create(p.sharding_rules()).status();
}

}  // namespace

absl::Status ValidateLoadSpec(const v1::LoadModelRequest& spec) {
  const std::string& id = spec.model_id();
  if (id.empty()) return absl::InvalidArgumentError("model_id is empty");
  if (id.size() > kMaxModelIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat("model_id is longer than ", kMaxModelIdBytes, " bytes"));
  }
  for (char c : id) {
    if (!ValidModelIdChar(c)) {
      return absl::InvalidArgumentError(
          absl::StrCat("model_id '", id, "' may hold only letters, digits and -_./:@"));
    }
  }
  const v1::ModelSource& source = spec.source();
  switch (source.kind_case()) {
    case v1::ModelSource::kPath:
      if (source.path().path().empty()) return absl::InvalidArgumentError("source.path.path is empty");
      break;
    case v1::ModelSource::kPush: {
      if (source.push().shard_files_size() == 0) {
        return absl::InvalidArgumentError("source.push.shard_files is empty");
      }
      std::set<std::string> seen;
      for (const std::string& f : source.push().shard_files()) {
        if (f.empty() || f.find('/') != std::string::npos) {
          return absl::InvalidArgumentError(absl::StrCat("source.push.shard_files: '", f, "' is not a file name"));
        }
        if (!seen.insert(f).second) {
          return absl::InvalidArgumentError(absl::StrCat("source.push.shard_files names '", f, "' twice"));
        }
      }
      break;
    }
    case v1::ModelSource::kPeer: {
      const v1::PeerSource& peer = source.peer();
      if (peer.address().empty()) return absl::InvalidArgumentError("source.peer.address is empty");
      if (peer.fallback_addresses_size() > kMaxPeerAddresses) {
        return absl::InvalidArgumentError(
            absl::StrCat("source.peer names ", peer.fallback_addresses_size(), " fallbacks; at most ", kMaxPeerAddresses));
      }
      for (const std::string& a : peer.fallback_addresses()) {
        if (a.empty()) return absl::InvalidArgumentError("source.peer.fallback_addresses holds an empty address");
      }
      if (peer.streams() > kMaxPeerStreams) {
        return absl::InvalidArgumentError(
            absl::StrCat("source.peer.streams ", peer.streams(), " is more than ", kMaxPeerStreams));
      }
      if (peer.model_id().size() > kMaxModelIdBytes) {
        return absl::InvalidArgumentError(absl::StrCat("source.peer.model_id is longer than ", kMaxModelIdBytes, " bytes"));
      }
      break;
    }
    case v1::ModelSource::KIND_NOT_SET:
      return absl::InvalidArgumentError("source is not set (path, push or peer)");
  }
  if (spec.prefer_peers() && !source.has_path()) {
    return absl::InvalidArgumentError("prefer_peers applies to path loads (a peer source names its peer)");
  }
  WEIGHTD_RETURN_IF_ERROR(ValidateQuantization(spec.quantization()));
  return ValidatePlacement(spec.placement());
}

v1::LoadModelRequest NormalizeSpec(const v1::LoadModelRequest& spec) {
  v1::LoadModelRequest normal = spec;
  v1::Quantization* q = normal.mutable_quantization();
  if (q->scheme() == v1::SCHEME_UNSPECIFIED) q->set_scheme(v1::SCHEME_PER_TENSOR);
  if (q->scale_scope() == v1::SCALE_SCOPE_UNSPECIFIED) q->set_scale_scope(v1::SCALE_SCOPE_TENSOR);
  if (q->nonfinite() == v1::NONFINITE_UNSPECIFIED) q->set_nonfinite(v1::NONFINITE_FAIL);
  v1::Placement* p = normal.mutable_placement();
  if (p->tp_size() == 0) p->set_tp_size(1);
  if (p->layout() == v1::LAYOUT_UNSPECIFIED) p->set_layout(v1::LAYOUT_CHECKPOINT);
  if (p->devices_size() == 0) {
    for (uint32_t d = 0; d < p->tp_size(); ++d) p->add_devices(d);
  }
  return normal;
}

}  // namespace weightd
