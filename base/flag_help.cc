#include "base/flag_help.h"

#include <string>

#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"

namespace weightd {
namespace {

// Abseil's own flags (--flagfile, --helpfull, ...) stay under --helpfull.
bool IsProgramFlag(absl::string_view file) { return !absl::StrContains(file, "absl/"); }

}  // namespace

void ConfigureFlagHelp(absl::string_view program, absl::string_view usage) {
  absl::SetProgramUsageMessage(usage);
  absl::FlagsUsageConfig config;
  config.contains_help_flags = IsProgramFlag;
  config.contains_helpshort_flags = IsProgramFlag;
  const std::string name(program);
  config.normalize_filename = [name](absl::string_view file) {
    return IsProgramFlag(file) ? name : std::string(file);
  };
  absl::SetFlagsUsageConfig(config);
}

}  // namespace weightd
