#include "services/load/push_pinning.h"

#include "absl/strings/str_cat.h"

namespace weightd {

absl::StatusOr<int> PushPinning::ParseFlag(absl::string_view value) {
  if (value == "auto") return kAutoMaxStreams;
  if (value == "true") return kAlways;
  if (value == "false") return 0;
  return absl::InvalidArgumentError(
      absl::StrCat("--pin-pushed-tensors must be auto, true or false, not '", value, "'"));
}

}  // namespace weightd
