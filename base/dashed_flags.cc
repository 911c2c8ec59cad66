#include "base/dashed_flags.h"

#include <algorithm>

namespace weightd {

std::vector<char*> AcceptDashedFlags(int argc, char** argv, std::vector<std::string>& storage) {
  storage.assign(argv, argv + argc);
  bool flags_ended = false;
  for (size_t i = 1; i < storage.size(); ++i) {
    std::string& arg = storage[i];
    if (arg == "--") flags_ended = true;
    if (flags_ended || arg.rfind("--", 0) != 0) continue;
    size_t end = std::min(arg.find('='), arg.size());
    std::replace(arg.begin() + 2, arg.begin() + end, '-', '_');
  }
  std::vector<char*> out;
  for (std::string& s : storage) out.push_back(s.data());
  return out;
}

}  // namespace weightd
