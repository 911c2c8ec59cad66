// A model this daemon can serve to peers: the checkpoint it was planned from,
// its plan and its memory. A resident model serves every item at once; a model
// still arriving from a peer (relay) serves each tensor once it has landed here,
// with the CRC-32C it arrived with. Reading goes through the device backend in
// bounded pieces; no registry lock is held while bytes move. Cancel ends the
// serving (an unload, a failed load): reads in progress finish, later calls get
// the status, and the memory is let go. Thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "services/device/device_backend.h"
#include "services/load/arena.h"
#include "services/load/load_job.h"
#include "services/peer/peer_items.h"
#include "weightd/v1/loader.pb.h"

namespace weightd {

class ServableModel {
 public:
  // `spec` normalized. `landed`: every item is in memory (a resident model);
  // otherwise items land through MarkLanded. A model a peer cannot take as it
  // is (layout vllm) is created refusing: every Describe is FAILED_PRECONDITION.
  static std::shared_ptr<ServableModel> Create(std::string model_id, const v1::LoadModelRequest& spec,
                                               std::shared_ptr<const LoadLayout> layout,
                                               std::vector<std::shared_ptr<Arena>> arenas, DeviceBackend& backend,
                                               bool landed);

  // The description (or why this model cannot be served, or the Cancel status).
  absl::StatusOr<const v1::PeerModel*> Describe() const;
  const std::vector<PeerItemRef>& items() const { return items_; }
  const std::string& source_digest() const { return Description().source_digest(); }
  const v1::Quantization& quantization() const { return spec_.quantization(); }
  bool landed_all() const { return landed_count_.load() == items_.size(); }

  // Relay: the items of one source tensor have landed here, each with the CRC-32C
  // it arrived with.
  void MarkLanded(const std::vector<uint32_t>& items, const std::vector<uint32_t>& crcs);
  // Relay: bytes [0, end) of an item still arriving have been placed here (they
  // arrive in order), so they may be served on before the item is whole.
  void MarkPlaced(uint32_t item, uint64_t end);
  // Waits (in steps, checking `stop`) until bytes [0, end) of `item` are placed,
  // or, with end == the item's size, until it has landed whole (its CRC-32C
  // checked). ABORTED when stopped; the Cancel status once cancelled.
  absl::Status AwaitPlaced(uint32_t item, uint64_t end, const std::atomic<bool>& stop) const;
  // The CRC-32C the item arrived with (relay), to check what is read back here.
  std::optional<uint32_t> ArrivedCrc(uint32_t item) const;
  // Bytes [offset, offset + size) of a landed item into `out`.
  absl::Status Read(uint32_t item, uint64_t offset, uint64_t size, char* out) const;

  // Ends serving with `status` (the first wins): waits for reads in progress, then
  // drops the memory. Idempotent.
  void Cancel(const absl::Status& status);

  // Serving streams now (FindPeerModel's "how busy").
  void StreamStarted() { ++streams_; }
  void StreamEnded() { --streams_; }
  uint32_t streams() const { return streams_.load(); }

 private:
  ServableModel() = default;
  // Built on first use (most models are never served): every shard's header and a SHA-256.
  const v1::PeerModel& Description() const;
  absl::Status ReadBytes(const PeerItemRef& item, uint64_t offset, uint64_t size, char* out) const;
  absl::Status ReadScales(const PeerItemRef& item, std::vector<float>& scales) const;

  std::string model_id_;
  v1::LoadModelRequest spec_;
  std::shared_ptr<const LoadLayout> layout_;
  DeviceBackend* backend_ = nullptr;
  std::vector<PeerItemRef> items_;
  mutable std::once_flag described_;
  mutable v1::PeerModel description_;
  absl::Status refusal_;  // why a peer cannot be served this model; OK if it can

  // Reads hold it shared; Cancel exclusively.
  mutable std::shared_mutex memory_mu_;
  std::vector<std::shared_ptr<Arena>> arenas_;
  absl::Status cancelled_;

  mutable std::mutex landed_mu_;
  mutable std::condition_variable landed_cv_;
  std::vector<bool> landed_;
  std::vector<uint64_t> placed_;  // relay: bytes placed so far of each item not yet landed
  std::vector<std::optional<uint32_t>> crcs_;
  std::atomic<size_t> landed_count_{0};
  std::atomic<uint32_t> streams_{0};
};

}  // namespace weightd
