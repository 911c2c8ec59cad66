#include "client/cpp/mapping.h"

#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "client/cpp/host_mapping.h"
#ifdef WEIGHTD_HAVE_CUDA
#include "client/cpp/cuda_mapping.h"
#endif

namespace weightd::client {

struct Mapping::Region {
#ifdef WEIGHTD_HAVE_CUDA
  std::variant<HostMapping, CudaMapping> memory;
#else
  std::variant<HostMapping> memory;
#endif
  void* base() const {
    return std::visit(
        [](const auto& m) -> void* {
          if constexpr (std::is_same_v<std::decay_t<decltype(m)>, HostMapping>) {
            return m.address();
          } else {
            return m.device_pointer();
          }
        },
        memory);
  }
};

Mapping::Mapping(Lease lease) : lease_(std::move(lease)) {}
Mapping::Mapping(Mapping&& other) noexcept = default;
Mapping& Mapping::operator=(Mapping&& other) noexcept {
  if (this != &other) {
    Release();
    lease_ = std::move(other.lease_);
    regions_ = std::move(other.regions_);
    tensors_ = std::move(other.tensors_);
    by_name_ = std::move(other.by_name_);
  }
  return *this;
}
Mapping::~Mapping() { Release(); }

absl::StatusOr<Mapping> Mapping::Map(Lease lease) {
  Mapping mapping(std::move(lease));
  const v1::RankManifest& rank = mapping.lease_.manifest();
  for (int i = 0; i < rank.allocations_size(); ++i) {
    WEIGHTD_ASSIGN_OR_RETURN(auto region, MapAllocation(rank, rank.allocations(i), mapping.lease_.fds()[i].get()));
    mapping.regions_.push_back(std::move(region));
  }
  for (const v1::TensorEntry& entry : rank.tensors()) {
    if (entry.allocation() >= static_cast<uint32_t>(rank.allocations_size()) ||
        entry.offset() + entry.size() > rank.allocations(entry.allocation()).size() ||
        entry.offset() + entry.size() < entry.offset()) {
      return absl::DataLossError(absl::StrCat("manifest of rank ", rank.rank(), " places ", entry.name(),
                                              " outside allocation ", entry.allocation()));
    }
    TensorView view;
    view.name = entry.name();
    view.data = static_cast<char*>(mapping.regions_[entry.allocation()]->base()) + entry.offset();
    view.dtype = entry.dtype();
    view.shape.assign(entry.shape().begin(), entry.shape().end());
    view.size_bytes = entry.size();
    view.device_kind = rank.device_kind();
    view.device = rank.device();
    mapping.by_name_.emplace(view.name, mapping.tensors_.size());
    mapping.tensors_.push_back(std::move(view));
  }
  return mapping;
}

void* Mapping::allocation_base(uint32_t id) const {
  return id < regions_.size() ? regions_[id]->base() : nullptr;
}

absl::StatusOr<TensorView> Mapping::Tensor(absl::string_view name) const {
  auto found = by_name_.find(std::string_view(name.data(), name.size()));
  if (found == by_name_.end()) {
    return absl::NotFoundError(absl::StrCat("rank ", manifest().rank(), " has no tensor '", name, "'"));
  }
  return tensors_[found->second];
}

void Mapping::Release() {
  tensors_.clear();
  by_name_.clear();
  regions_.clear();  // unmapped before the lease ends
  lease_.Release();
}

absl::StatusOr<std::unique_ptr<Mapping::Region>> Mapping::MapAllocation(const v1::RankManifest& rank,
                                                                         const v1::Allocation& allocation, int fd) {
  if (allocation.handle_type() == v1::HANDLE_TYPE_MEMFD) {
    WEIGHTD_ASSIGN_OR_RETURN(HostMapping host, HostMapping::Map(fd, allocation.size(), allocation.id()));
    return std::unique_ptr<Mapping::Region>(new Mapping::Region{std::move(host)});
  }
#ifdef WEIGHTD_HAVE_CUDA
  WEIGHTD_ASSIGN_OR_RETURN(CudaMapping gpu, CudaMapping::Import(allocation, fd, static_cast<int>(rank.device())));
  return std::unique_ptr<Mapping::Region>(new Mapping::Region{std::move(gpu)});
#else
  return absl::UnimplementedError(absl::StrCat("allocation ", allocation.id(), " is ",
                                               v1::HandleType_Name(allocation.handle_type()),
                                               ": mapping GPU memory needs a client built with CUDA"));
#endif
}

}  // namespace weightd::client
