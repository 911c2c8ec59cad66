#include "services/peer/peer_description.h"

#include <google/protobuf/util/message_differencer.h>
#include <openssl/evp.h>

#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/safetensors/writer.h"

namespace weightd {
namespace {

std::string QuantizationText(const v1::Quantization& q, uint32_t tp) {
  return absl::StrCat(v1::Scheme_Name(q.scheme()), ", ", v1::ScaleScope_Name(q.scale_scope()), ", ",
                      v1::NonFinite_Name(q.nonfinite()), ", ignore [", absl::StrJoin(q.ignore(), ", "),
                      "], tp_size ", tp);
}

}  // namespace

std::string HeaderJsonOf(const safetensors::ShardHeader& header) {
  std::vector<safetensors::TensorSpec> specs;
  specs.reserve(header.tensors.size());
  for (const safetensors::TensorHeader& t : header.tensors) specs.push_back({t.name, t.dtype, t.shape});
  return safetensors::BuildHeaderJson(specs, header.metadata);
}

std::string SourceDigest(const std::vector<ShardInput>& shards, const std::string& config_json) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  auto add = [ctx](std::string_view bytes) {
    const std::string length = absl::StrCat(bytes.size(), ":");
    EVP_DigestUpdate(ctx, length.data(), length.size());
    EVP_DigestUpdate(ctx, bytes.data(), bytes.size());
  };
  for (const ShardInput& shard : shards) {
    add(shard.file);
    add(HeaderJsonOf(shard.header));
  }
  add(config_json);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_DigestFinal_ex(ctx, digest, &size);
  EVP_MD_CTX_free(ctx);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(digest), size));
}

v1::PeerModel DescribeModel(const std::string& model_id, const v1::LoadModelRequest& spec,
                            const std::vector<ShardInput>& shards, const std::string& config_json,
                            const std::vector<PeerItemRef>& items) {
  v1::PeerModel m;
  m.set_model_id(model_id);
  *m.mutable_quantization() = spec.quantization();
  m.set_tp_size(spec.placement().tp_size());
  m.set_config_json(std::string(config_json));
  for (const ShardInput& shard : shards) {
    v1::PeerShard* s = m.add_shards();
    s->set_file(shard.file);
    s->set_header_json(HeaderJsonOf(shard.header));
  }
  for (const PeerItemRef& item : items) {
    v1::PeerItem* i = m.add_items();
    i->set_name(item.name);
    i->set_size(item.size);
  }
  m.set_source_digest(SourceDigest(shards, config_json));
  return m;
}

absl::StatusOr<PeerCheckpoint> ReadDescription(const v1::PeerModel& model, const safetensors::ParseLimits& limits,
                                               const std::string& from) {
  if (model.shards_size() == 0) {
    return absl::InvalidArgumentError(absl::StrCat("peer ", from, " describes model '", model.model_id(),
                                                   "' with no shards"));
  }
  PeerCheckpoint out;
  std::set<std::string> seen;
  for (const v1::PeerShard& shard : model.shards()) {
    if (shard.file().empty() || shard.file().find('/') != std::string::npos || shard.file().size() > 1024 ||
        !seen.insert(shard.file()).second) {
      return absl::InvalidArgumentError(absl::StrCat("peer ", from, " names a shard '",
                                                     shard.file().substr(0, 128), "' that is empty, a path, or twice"));
    }
    absl::StatusOr<safetensors::ShardHeader> header =
        safetensors::ParseShardHeaderJson(shard.file(), shard.header_json(), limits);
    if (!header.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("peer ", from, ": ", header.status().message()));
    }
    out.shards.push_back(ShardInput{shard.file(), std::move(*header)});
  }
  out.config_json = model.config_json();
  const std::string digest = SourceDigest(out.shards, out.config_json);
  if (digest != model.source_digest()) {
    return absl::DataLossError(absl::StrCat("peer ", from, ": the description of model '", model.model_id(),
                                            "' does not match its digest"));
  }
  return out;
}

absl::Status CheckPeerCompatible(const v1::PeerModel& peer, const v1::LoadModelRequest& spec, const std::string& from) {
  const uint32_t tp = spec.placement().tp_size();
  const std::string sides = absl::StrCat("peer ", from, " holds model '", peer.model_id(), "' as ",
                                         QuantizationText(peer.quantization(), peer.tp_size()),
                                         "; this load asks for ", QuantizationText(spec.quantization(), tp));
  if (!google::protobuf::util::MessageDifferencer::Equals(peer.quantization(), spec.quantization())) {
    return absl::FailedPreconditionError(
        absl::StrCat(sides, ": a peer serves its FP8 bytes as they are, so the quantization must be the same"));
  }
  if (peer.quantization().scale_scope() == v1::SCALE_SCOPE_SHARD && (peer.tp_size() > 1 || tp > 1)) {
    return absl::FailedPreconditionError(absl::StrCat(
        sides, ": under scale scope shard each rank's scales are its own slice's, so they cannot be re-cut for "
               "another split; load with scale scope tensor on both sides"));
  }
  return absl::OkStatus();
}

absl::Status CheckSameItems(const v1::PeerModel& peer, const std::vector<PeerItemRef>& items, const std::string& from) {
  if (static_cast<size_t>(peer.items_size()) != items.size()) {
    return absl::FailedPreconditionError(absl::StrCat("peer ", from, " serves ", peer.items_size(),
                                                      " items of model '", peer.model_id(), "', this daemon expects ",
                                                      items.size()));
  }
  for (size_t i = 0; i < items.size(); ++i) {
    const v1::PeerItem& p = peer.items(static_cast<int>(i));
    if (p.name() != items[i].name || p.size() != items[i].size) {
      return absl::FailedPreconditionError(absl::StrCat("peer ", from, " serves item ", i, " as '", p.name(), "' of ",
                                                        p.size(), " bytes, this daemon expects '", items[i].name,
                                                        "' of ", items[i].size));
    }
  }
  return absl::OkStatus();
}

}  // namespace weightd
