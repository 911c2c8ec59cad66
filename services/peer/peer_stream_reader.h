// Checks the messages of one ServePeer stream as they arrive, on the receiving
// side: the description first (where asked for), then each item of the range
// [first, end) in order, its bytes in order without gap or excess, its last
// message carrying the CRC-32C of the whole item, which must match. Every
// departure is an error naming the peer, the item's tensor and the byte offset.
// Not thread-safe: one reader per stream.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "weightd/v1/loader.pb.h"

namespace weightd {

class PeerStreamReader {
 public:
  struct Item {
    std::string name;
    uint64_t size = 0;
  };
  struct Event {
    bool description = false;  // the PeerModel message: call SetItems before the next
    uint32_t item = 0;         // data: the item, where its bytes go, and whether it is now whole
    uint64_t offset = 0;
    std::string_view data;
    bool complete = false;
    uint32_t crc32c = 0;       // of the whole item, once complete (checked)
  };

  // `from` names the peer in messages.
  PeerStreamReader(std::string from, uint32_t first, uint32_t end, bool expect_description);

  // The items of the model (from the description); before any data message.
  void SetItems(std::vector<Item> items);
  // One message. INVALID_ARGUMENT for a message out of order (a second
  // description, data before the description or the items, another item than
  // the next one, an offset other than the next byte, bytes past the item's
  // end); DATA_LOSS when a completed item's CRC-32C differs. `message` must
  // outlive the returned event's data.
  absl::StatusOr<Event> Next(const v1::PeerMessage& message);
  // The stream ended: DATA_LOSS unless every item of the range came whole.
  absl::Status Finish() const;
  // The first item of the range not yet whole (where another peer resumes).
  uint32_t next_item() const { return next_; }

 private:
  absl::Status Refuse(const std::string& what) const;

  std::string from_;
  uint32_t end_;
  bool awaiting_description_;
  bool have_items_ = false;
  std::vector<Item> items_;
  uint32_t next_;       // the item being received
  uint64_t received_ = 0;  // its bytes so far
  uint32_t crc_ = 0;       // of those bytes
};

}  // namespace weightd
