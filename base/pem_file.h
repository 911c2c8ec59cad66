// Reads a PEM file (certificate, key or CA bundle) for TLS, on the daemon's
// listeners and in the clients alike. Thread-safe (pure).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace weightd {

// The file's text. INVALID_ARGUMENT "<what>: ..." naming the file when it cannot
// be read or holds no PEM block ("-----BEGIN"), as a directory or an empty file.
absl::StatusOr<std::string> ReadPemFile(const std::string& path, absl::string_view what);

}  // namespace weightd
