#include <cstdio>
#include <string>

#include "absl/status/status.h"
#include "client/weightctl/cli.h"

namespace weightd::ctl {

int ReportError(const absl::Status& status) {
  std::fprintf(stderr, "weightctl: %s: %s\n", absl::StatusCodeToString(status.code()).c_str(),
               std::string(status.message()).c_str());
  return 1;
}

int Usage(const std::string& text) {
  std::fprintf(stderr, "weightctl: usage: %s\n", text.c_str());
  return 2;
}

}  // namespace weightd::ctl
