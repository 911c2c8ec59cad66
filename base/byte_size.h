// Human byte sizes for flags and output: "17179869184", "16GiB", "512MiB", "1.5G".
// Binary multiples for both "Gi" and "G" (device memory is counted in binary units).
// Thread-safe (pure).
#pragma once

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace weightd {

absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text);
// "1.50 GiB", "512 B".
std::string FormatByteSize(uint64_t bytes);

}  // namespace weightd
