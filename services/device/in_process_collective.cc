#include "services/device/in_process_collective.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace weightd {
namespace {

// Bounds the host copy of a broadcast, whatever the tensor's size.
constexpr uint64_t kBroadcastChunk = uint64_t{8} << 20;

}  // namespace

absl::Status InProcessCollective::AllReduceMax(std::vector<std::vector<float>>& values) {
  if (static_cast<int>(values.size()) != ranks_) {
    return absl::InternalError(absl::StrCat("all-reduce of ", values.size(), " ranks in a group of ", ranks_));
  }
  std::vector<float> max = values[0];
  for (const std::vector<float>& v : values) {
    if (v.size() != max.size()) return absl::InternalError("all-reduce of unequal lengths");
    for (size_t i = 0; i < v.size(); ++i) max[i] = std::max(max[i], v[i]);
  }
  for (std::vector<float>& v : values) v = max;
  return absl::OkStatus();
}

absl::Status InProcessCollective::Broadcast(int root, const std::vector<RankRegion>& regions, uint64_t size) {
  if (static_cast<int>(regions.size()) != ranks_ || root < 0 || root >= ranks_) {
    return absl::InternalError(absl::StrCat("broadcast from rank ", root, " to ", regions.size(), " ranks in a group of ",
                                            ranks_));
  }
  std::string chunk(std::min(size, kBroadcastChunk), '\0');
  for (uint64_t done = 0; done < size; done += chunk.size()) {
    const uint64_t n = std::min<uint64_t>(chunk.size(), size - done);
    const RankRegion& from = regions[root];
    WEIGHTD_RETURN_IF_ERROR(backend_.Read(*from.allocation, from.offset + done, n, chunk.data()));
    for (int r = 0; r < ranks_; ++r) {
      if (r == root) continue;
      WEIGHTD_RETURN_IF_ERROR(
          backend_.Write(*regions[r].allocation, regions[r].offset + done, std::string_view(chunk.data(), n)));
    }
  }
  for (int r = 0; r < ranks_; ++r) {
    if (r != root) WEIGHTD_RETURN_IF_ERROR(backend_.Synchronize(regions[r].allocation->device()));
  }
  return absl::OkStatus();
}

}  // namespace weightd
