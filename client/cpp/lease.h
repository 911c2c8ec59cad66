// A worker's lease on one rank of a resident model: attaches over weightd's
// handle socket and holds the manifest and one memory file descriptor per
// allocation. The lease lasts while the connection is open; Release() or
// destruction ends it (mappings already made from the fds stay valid).
// Thread-safety: not thread-safe; move-only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/unique_fd.h"
#include "weightd/v1/handoff.pb.h"

namespace weightd::client {

class Lease {
 public:
  // Connects to `socket_path` and asks for `model_id`'s rank `rank`. The
  // daemon's refusal comes back with its own code and message; a response with
  // fewer descriptors than allocations is DATA_LOSS.
  static absl::StatusOr<Lease> Attach(const std::string& socket_path, const std::string& model_id,
                                      uint32_t rank, absl::Duration timeout = absl::Seconds(30));

  Lease(Lease&&) noexcept = default;
  Lease& operator=(Lease&&) noexcept = default;
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  ~Lease();  // Release()

  const v1::RankManifest& manifest() const { return manifest_; }
  uint64_t lease_id() const { return lease_id_; }
  // One per manifest allocation, in order.
  const std::vector<UniqueFd>& fds() const { return fds_; }
  bool held() const { return connection_.valid(); }

  // Ends the lease: closes the connection and the descriptors.
  void Release();

 private:
  Lease() = default;

  UniqueFd connection_;
  v1::RankManifest manifest_;
  uint64_t lease_id_ = 0;
  std::vector<UniqueFd> fds_;
};

}  // namespace weightd::client
