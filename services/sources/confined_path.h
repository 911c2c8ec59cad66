// Opens files of path sources so that nothing outside the model root can be read:
// a request's path is first checked lexically (no `..` component, an absolute path
// must lie under the root), then every open resolves beneath the root's descriptor
// (openat2 RESOLVE_BENEATH: no symlink or `..` may leave it), and the opened
// descriptor's real path (/proc/self/fd) is checked again against the root.
// Thread-safe (no state).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "base/unique_fd.h"

namespace weightd {

// `path` relative to `root` (or absolute, under it) made relative and normalized
// ("a//b/./c" -> "a/b/c", the root itself -> "."). INVALID_ARGUMENT for a `..`
// component, an absolute path not under the root, a NUL byte or an empty path.
// Decided from the text alone, before anything is looked up.
absl::StatusOr<std::string> ConfinedRelativePath(const std::string& root, const std::string& path);

// Opens `relative` (as from ConfinedRelativePath) beneath `root` with `flags`
// (O_CLOEXEC is added). NOT_FOUND when it does not exist, PERMISSION_DENIED when
// it resolves outside the root (a symlink escape) or cannot be read.
absl::StatusOr<UniqueFd> OpenBeneath(const std::string& root, const std::string& relative, int flags);

}  // namespace weightd
