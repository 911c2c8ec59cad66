#include "services/peer/peer_stream_reader.h"

#include "absl/strings/str_cat.h"
#include "base/crc32c.h"

namespace weightd {

PeerStreamReader::PeerStreamReader(std::string from, uint32_t first, uint32_t end, bool expect_description)
    : from_(std::move(from)), end_(end), awaiting_description_(expect_description), next_(first) {}

void PeerStreamReader::SetItems(std::vector<Item> items) {
  items_ = std::move(items);
  have_items_ = true;
  if (end_ == 0 || end_ > items_.size()) end_ = static_cast<uint32_t>(items_.size());
}

absl::Status PeerStreamReader::Refuse(const std::string& what) const {
  return absl::InvalidArgumentError(absl::StrCat("peer ", from_, ": ", what));
}

absl::StatusOr<PeerStreamReader::Event> PeerStreamReader::Next(const v1::PeerMessage& message) {
  Event event;
  if (message.has_model()) {
    if (!awaiting_description_) return Refuse("sent a second description, or one that was not asked for");
    awaiting_description_ = false;
    event.description = true;
    return event;
  }
  if (!message.has_data()) return Refuse("sent an empty message");
  if (awaiting_description_ || !have_items_) return Refuse("sent data before the model's description");
  const v1::PeerData& data = message.data();
  if (next_ >= end_) {
    return Refuse(absl::StrCat("sent item ", data.item(), " after the last item asked for (", end_, ")"));
  }
  const Item& item = items_[next_];
  if (data.item() != next_) {
    return Refuse(absl::StrCat("sent item ", data.item(), " where item ", next_, " ('", item.name, "') was due"));
  }
  if (data.offset() != received_) {
    return Refuse(absl::StrCat("sent tensor '", item.name, "' from byte ", data.offset(), " where byte ", received_,
                               " was due"));
  }
  if (data.data().size() > item.size - received_) {
    return Refuse(absl::StrCat("sent ", data.data().size(), " bytes of tensor '", item.name, "' at byte ",
                               data.offset(), ", past its ", item.size, " bytes"));
  }
  crc_ = Crc32c(crc_, data.data());
  received_ += data.data().size();
  event.item = next_;
  event.offset = data.offset();
  event.data = data.data();
  if (received_ == item.size && data.last()) {
    if (data.crc32c() != crc_) {
      return absl::DataLossError(absl::StrCat("peer ", from_, ": tensor '", item.name, "' arrived with CRC-32C ",
                                              crc_, " where the peer's is ", data.crc32c(),
                                              ": its bytes were changed on the way"));
    }
    event.complete = true;
    event.crc32c = crc_;
    ++next_;
    received_ = 0;
    crc_ = 0;
  } else if (received_ == item.size || data.last()) {
    return Refuse(absl::StrCat("ended tensor '", item.name, "' at byte ", received_, " of ", item.size));
  }
  return event;
}

absl::Status PeerStreamReader::Finish() const {
  if (awaiting_description_) {
    return absl::DataLossError(absl::StrCat("peer ", from_, " ended the stream before the model's description"));
  }
  if (next_ < end_) {
    return absl::DataLossError(absl::StrCat("peer ", from_, " ended the stream at byte ", received_, " of tensor '",
                                            items_[next_].name, "' (item ", next_, " of ", end_, ")"));
  }
  return absl::OkStatus();
}

}  // namespace weightd
