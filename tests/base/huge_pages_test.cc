#include "base/huge_pages.h"

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"

namespace weightd {
namespace {

// The VmFlags line of the mapping of this process that holds `address`.
std::string VmFlagsAt(uintptr_t address) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    uintptr_t begin = 0, end = 0;
    char dash = 0;
    std::istringstream header(line);
    if (header >> std::hex >> begin >> dash >> end && dash == '-') {
      inside = begin <= address && address < end;
    } else if (inside && line.rfind("VmFlags:", 0) == 0) {
      return line;
    }
  }
  return "";
}

TEST(HugePagesTest, ALargeBufferIsAdvisedAndASmallOneIsNot) {
  std::string small;
  small.reserve(kHugePageAdviceMin - 1);
  EXPECT_FALSE(AdviseHugePages(small.data(), small.capacity()));
  EXPECT_FALSE(AdviseHugePages(nullptr, kHugePageAdviceMin * 2));

  std::string large;
  large.reserve(kHugePageAdviceMin * 2);
  if (!AdviseHugePages(large.data(), large.capacity())) {
    GTEST_SKIP() << "this kernel takes no MADV_HUGEPAGE (no transparent huge pages)";
  }
  constexpr uintptr_t kHuge = kHugePageBytes;
  const uintptr_t inside = (reinterpret_cast<uintptr_t>(large.data()) + kHuge - 1) & ~(kHuge - 1);
  const std::string flags = VmFlagsAt(inside);
  ASSERT_FALSE(flags.empty()) << "no mapping holds the buffer";
  EXPECT_NE(flags.find(" hg"), std::string::npos) << flags;
}

}  // namespace
}  // namespace weightd
