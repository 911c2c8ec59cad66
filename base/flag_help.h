// --help for the binaries: lists every flag of the program (Abseil's default
// filter keeps only flags of a file named like the binary, which matches none of
// ours), under the program's name instead of a source path. Call before parsing.
// Not thread-safe: call once, at the start of main.
#pragma once

#include "absl/strings/string_view.h"

namespace weightd {

void ConfigureFlagHelp(absl::string_view program, absl::string_view usage);

}  // namespace weightd
