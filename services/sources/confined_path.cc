#include "services/sources/confined_path.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace weightd {
namespace {

std::string Normalized(const std::string& path) {
  std::vector<std::string> parts;
  for (absl::string_view part : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    if (part != ".") parts.emplace_back(part);
  }
  return absl::StrJoin(parts, "/");
}

absl::StatusOr<std::string> FdPath(int fd) {
  char buf[PATH_MAX];
  std::string link = absl::StrCat("/proc/self/fd/", fd);
  ssize_t n = ::readlink(link.c_str(), buf, sizeof(buf) - 1);
  if (n < 0) return absl::InternalError(absl::StrCat("readlink ", link, ": ", std::strerror(errno)));
  return std::string(buf, static_cast<size_t>(n));
}

int OpenAt2(int dir_fd, const char* path, int flags) {
  struct open_how how = {};
  how.flags = static_cast<uint64_t>(flags);
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  return static_cast<int>(::syscall(SYS_openat2, dir_fd, path, &how, sizeof(how)));
}

}  // namespace

absl::StatusOr<std::string> ConfinedRelativePath(const std::string& root, const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("source.path is empty");
  if (path.find('\0') != std::string::npos) return absl::InvalidArgumentError("source.path contains a NUL byte");
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "..") {
      return absl::InvalidArgumentError(absl::StrCat("path '", path, "' contains '..'; paths must stay in the model root"));
    }
  }
  if (path[0] != '/') {
    std::string rel = Normalized(path);
    return rel.empty() ? "." : rel;
  }
  std::string abs = Normalized(path), base = Normalized(root);
  if (abs == base) return std::string(".");
  if (!absl::StartsWith(abs, base + "/")) {
    return absl::InvalidArgumentError(absl::StrCat("path '", path, "' is outside the model root"));
  }
  return abs.substr(base.size() + 1);
}

absl::StatusOr<UniqueFd> OpenBeneath(const std::string& root, const std::string& relative, int flags) {
  UniqueFd root_fd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd.valid()) {
    return absl::FailedPreconditionError(absl::StrCat("model root '", root, "': ", std::strerror(errno)));
  }
  UniqueFd fd(OpenAt2(root_fd.get(), relative.c_str(), flags | O_CLOEXEC));
  if (!fd.valid() && errno == ENOSYS) {
    // Kernels before 5.6: resolve normally; the descriptor check below confines it.
    fd.reset(::openat(root_fd.get(), relative.c_str(), flags | O_CLOEXEC));
  }
  if (!fd.valid()) {
    int err = errno;
    if (err == ENOENT || err == ENOTDIR) {
      return absl::NotFoundError(absl::StrCat("'", relative, "' does not exist in the model root"));
    }
    if (err == EXDEV || err == ELOOP) {
      return absl::PermissionDeniedError(absl::StrCat("'", relative, "' resolves outside the model root"));
    }
    return absl::PermissionDeniedError(absl::StrCat("cannot open '", relative, "': ", std::strerror(err)));
  }
  // The descriptor, not the name, is what gets read: check where it really is.
  absl::StatusOr<std::string> real_root = FdPath(root_fd.get());
  absl::StatusOr<std::string> real = FdPath(fd.get());
  if (!real_root.ok()) return real_root.status();
  if (!real.ok()) return real.status();
  if (*real != *real_root && !absl::StartsWith(*real, *real_root == "/" ? "/" : *real_root + "/")) {
    return absl::PermissionDeniedError(absl::StrCat("'", relative, "' resolves outside the model root"));
  }
  return fd;
}

}  // namespace weightd
