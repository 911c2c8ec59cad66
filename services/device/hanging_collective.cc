#include "services/device/hanging_collective.h"

#include <chrono>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "base/log.h"

namespace weightd {
namespace {

[[noreturn]] void HangForever(const char* operation) {
  LogEvent(LogLevel::kWarning, "test_collective_hang",
           {{"operation", operation}, {"reason", "--test-hang-collective: this call never returns"}});
  for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
}

}  // namespace

absl::StatusOr<CollectiveHang> ParseCollectiveHang(std::string_view text) {
  if (text.empty()) return CollectiveHang::kNone;
  if (text == "broadcast") return CollectiveHang::kBroadcast;
  if (text == "all_reduce") return CollectiveHang::kAllReduce;
  return absl::InvalidArgumentError(
      absl::StrCat("--test-hang-collective must be broadcast or all_reduce, not '", std::string(text), "'"));
}

absl::Status HangingCollective::AllReduceMax(std::vector<std::vector<float>>& values) {
  if (hang_ == CollectiveHang::kAllReduce) HangForever("all_reduce");
  return inner_->AllReduceMax(values);
}

absl::Status HangingCollective::Broadcast(int root, const std::vector<RankRegion>& regions, uint64_t size) {
  if (hang_ == CollectiveHang::kBroadcast) HangForever("broadcast");
  return inner_->Broadcast(root, regions, size);
}

}  // namespace weightd
