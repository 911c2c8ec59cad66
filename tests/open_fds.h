// The number of descriptors this process has open (entries of /proc/self/fd, the
// directory's own included), for tests that check nothing leaked or closed twice.
#pragma once

#include <dirent.h>

namespace weightd::testing {

inline int OpenFdCount() {
  int count = 0;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  while (::readdir(dir) != nullptr) ++count;
  ::closedir(dir);
  return count;
}

}  // namespace weightd::testing
