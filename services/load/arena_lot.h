// Device memory a load borrows from its own arena for a while: the destinations of
// the tensors it places last lie empty until then. A parked per-tensor tensor
// (services/device/parked_tensor.h) holds its rest there, copied once with its
// amax taken on the way, instead of reading it on the host a second time; the
// device quantizes it from there into its destination. No device memory beyond
// the arena: the lot is the arena's own, borrowed, and returned before the
// tensors it belongs to are written.
//
// The lot closes when the first of those tensors is about to be written (or at
// the end of the load): no lease is granted after that, Close waits until every
// lease has come back and then runs a fence once (the device work that reads the
// leases done), so that nothing the device still reads is overwritten. A returned
// range is taken again only once its `done` predicate (the device read it) holds.
// Thread-safe.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include "absl/status/status.h"

namespace weightd {

class ArenaLot {
 public:
  struct Region {
    uint64_t offset = 0, size = 0;  // bytes of a rank's arena
  };
  // Leases start at multiples of this (device loads of whole vectors).
  static constexpr uint64_t kAlignment = 256;

  // regions[rank]: ranges of that rank's arena nothing writes until Close.
  explicit ArenaLot(std::vector<std::vector<Region>> regions);
  ArenaLot(const ArenaLot&) = delete;
  ArenaLot& operator=(const ArenaLot&) = delete;

  // A range of a rank's lot while it is held; moving it moves the hold.
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept { *this = std::move(other); }
    Lease& operator=(Lease&& other) noexcept;
    ~Lease() { Return(nullptr); }
    uint64_t offset() const { return offset_; }
    // Gives the range back; it is leased again once `done` (may be null: at once)
    // returns true: the device has read what it holds.
    void Return(std::function<bool()> done);

   private:
    friend class ArenaLot;
    ArenaLot* lot_ = nullptr;
    size_t rank_ = 0, region_ = 0;
    uint64_t offset_ = 0;
  };

  // `bytes` of the rank's lot, or nothing: the lot is closed (or closing), or no
  // free range is that large.
  std::optional<Lease> TryLease(size_t rank, uint64_t bytes);
  // Grants no more leases, waits until every lease has been returned, then runs
  // `fence` (the first caller does; the others wait for it) and returns its status.
  absl::Status Close(const std::function<absl::Status()>& fence);
  // The load failed: no more leases, and Close (now or later) returns ABORTED
  // without waiting for leases still held (a collective that never returns may
  // hold one).
  void Abort();

  uint64_t leases_granted() const;

 private:
  struct Busy {
    uint64_t end;
    std::function<bool()> done;  // set once returned: free again when it holds
  };
  void Release(size_t rank, size_t region, uint64_t offset, std::function<bool()> done);

  const std::vector<std::vector<Region>> regions_;
  mutable std::mutex mu_;
  std::condition_variable returned_;
  // [rank][region]: begin -> the leased range, held or returned but still read.
  std::vector<std::vector<std::map<uint64_t, Busy>>> busy_;
  size_t held_ = 0;
  bool closing_ = false, fenced_ = false, aborted_ = false;
  absl::Status fence_status_;
  uint64_t granted_ = 0;
};

}  // namespace weightd
