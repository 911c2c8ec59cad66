// libFuzzer target for what a receiving daemon reads from a ServePeer stream:
// the description (shard headers through the safetensors parser, names,
// digest, compatibility) and the data messages (order, offsets, sizes, CRC).
// Input: messages, each a 2-byte little-endian length and a serialized
// PeerMessage. Refusals must be INVALID_ARGUMENT, DATA_LOSS or
// FAILED_PRECONDITION; nothing may crash or read out of bounds.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "services/load/spec_validation.h"
#include "services/peer/peer_description.h"
#include "services/peer/peer_items.h"
#include "services/peer/peer_stream_reader.h"

namespace {

void ExpectRefusal(const absl::Status& status) {
  if (status.ok() || status.code() == absl::StatusCode::kInvalidArgument ||
      status.code() == absl::StatusCode::kDataLoss || status.code() == absl::StatusCode::kFailedPrecondition) {
    return;
  }
  std::fprintf(stderr, "unexpected status: %s\n", status.ToString().c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  weightd::safetensors::ParseLimits limits;
  limits.max_header_bytes = 1 << 16;
  limits.max_tensors = 256;
  weightd::PeerStreamReader reader("fuzz", 0, 0, true);
  while (in.size() >= 2) {
    const size_t n = static_cast<uint8_t>(in[0]) | static_cast<size_t>(static_cast<uint8_t>(in[1])) << 8;
    in.remove_prefix(2);
    if (n > in.size()) break;
    weightd::v1::PeerMessage message;
    if (!message.ParseFromArray(in.data(), static_cast<int>(n))) return 0;
    in.remove_prefix(n);
    absl::StatusOr<weightd::PeerStreamReader::Event> event = reader.Next(message);
    if (!event.ok()) {
      ExpectRefusal(event.status());
      return 0;
    }
    if (!event->description) {
      if (event->data.size() > message.data().data().size()) std::abort();
      continue;
    }
    auto checkpoint = weightd::ReadDescription(message.model(), limits, "fuzz");
    if (!checkpoint.ok()) {
      ExpectRefusal(checkpoint.status());
      return 0;
    }
    weightd::v1::LoadModelRequest spec;
    *spec.mutable_quantization() = message.model().quantization();
    spec = weightd::NormalizeSpec(spec);
    ExpectRefusal(weightd::CheckPeerCompatible(message.model(), spec, "fuzz"));
    auto items = weightd::PeerItemsOf(checkpoint->shards, spec.quantization());
    if (!items.ok()) return 0;
    ExpectRefusal(weightd::CheckSameItems(message.model(), *items, "fuzz"));
    std::vector<weightd::PeerStreamReader::Item> list;
    for (const auto& i : *items) list.push_back({i.name, i.size});
    reader.SetItems(std::move(list));
  }
  ExpectRefusal(reader.Finish());
  return 0;
}
