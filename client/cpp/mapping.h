// A worker's mapped view of one rank of a resident model. Its lifetime is the
// lease: it holds the handle-socket connection (weightd counts it as a lease
// while it lives), maps every allocation once (mmap of the memfd for host
// devices, VMM import or IPC open for CUDA) and hands out tensor views into that
// memory. Destruction, or Release(), unmaps and then ends the lease; so does the
// death of the process. Views are invalid afterwards.
// Thread-safety: const methods may be called concurrently; Release() and moves
// must not race with them. Move-only.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/cpp/lease.h"
#include "client/cpp/tensor_view.h"

namespace weightd::client {

class Mapping {
 public:
  // Maps every allocation of the lease. A manifest that places a tensor outside
  // its allocation is DATA_LOSS; CUDA allocations in a build without CUDA are
  // UNIMPLEMENTED.
  static absl::StatusOr<Mapping> Map(Lease lease);

  Mapping(Mapping&& other) noexcept;
  Mapping& operator=(Mapping&& other) noexcept;
  ~Mapping();  // Release()

  const v1::RankManifest& manifest() const { return lease_.manifest(); }
  uint64_t lease_id() const { return lease_.lease_id(); }
  bool held() const { return lease_.held(); }

  // Where allocation `id` starts in this process (host or device address).
  void* allocation_base(uint32_t id) const;
  // Every tensor of the rank, in manifest order.
  const std::vector<TensorView>& tensors() const { return tensors_; }
  // NOT_FOUND naming the model and rank when the rank has no such tensor.
  absl::StatusOr<TensorView> Tensor(absl::string_view name) const;

  // Unmaps every allocation, then ends the lease. Idempotent.
  void Release();

 private:
  struct Region;  // one mapped allocation: host mmap or CUDA import
  explicit Mapping(Lease lease);
  static absl::StatusOr<std::unique_ptr<Region>> MapAllocation(const v1::RankManifest& rank,
                                                               const v1::Allocation& allocation, int fd);

  Lease lease_;
  std::vector<std::unique_ptr<Region>> regions_;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t, std::less<>> by_name_;
};

}  // namespace weightd::client
