#include "base/pem_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/unique_fd.h"

namespace weightd {
namespace {

// Far above any certificate bundle; keeps a path such as /dev/zero from filling memory.
constexpr size_t kMaxPemBytes = 16 << 20;

}  // namespace

absl::StatusOr<std::string> ReadPemFile(const std::string& path, absl::string_view what) {
  auto cannot_read = [&](int error) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": cannot read '", path, "': ", std::strerror(error)));
  };
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return cannot_read(errno);
  std::string pem;
  char buffer[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return cannot_read(errno);
    if (n == 0) break;
    pem.append(buffer, static_cast<size_t>(n));
    if (pem.size() > kMaxPemBytes) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": '", path, "' is over ", kMaxPemBytes >> 20, " MiB"));
    }
  }
  if (!absl::StrContains(pem, "-----BEGIN ")) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": '", path, "' holds no PEM block"));
  }
  return pem;
}

}  // namespace weightd
