// Testing only (--test-hang-collective): a collective one of whose operations
// never returns, as an NCCL call never does when a peer rank is wedged. It lets
// the end-to-end tests show that a forced unload and SIGTERM complete while a
// load's thread is stuck in a collective (tests/e2e/hung_collective_e2e_test.cc).
// The hanging operation logs `test_collective_hang` once it has begun to hang,
// touches no memory, and blocks its thread until the process ends; the other
// operation goes to the wrapped collective.
// Thread-safe.
#pragma once

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "services/device/collective.h"

namespace weightd {

enum class CollectiveHang { kNone, kBroadcast, kAllReduce };

// "" (none), "broadcast" or "all_reduce"; anything else is INVALID_ARGUMENT.
absl::StatusOr<CollectiveHang> ParseCollectiveHang(std::string_view text);

class HangingCollective : public Collective {
 public:
  HangingCollective(std::shared_ptr<Collective> inner, CollectiveHang hang) : inner_(std::move(inner)), hang_(hang) {}

  int ranks() const override { return inner_->ranks(); }
  absl::Status AllReduceMax(std::vector<std::vector<float>>& values) override;
  absl::Status Broadcast(int root, const std::vector<RankRegion>& regions, uint64_t size) override;

 private:
  std::shared_ptr<Collective> inner_;
  const CollectiveHang hang_;
};

}  // namespace weightd
