// `--name=N` from the command line of the network benchmarks (weightd-bench-tcp,
// weightd-bench-grpc), or `fallback` where it is not given.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>

namespace weightd::bench {

inline uint64_t FlagValue(int argc, char** argv, const std::string& name, uint64_t fallback) {
  const std::string prefix = "--" + name + "=";
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]).rfind(prefix, 0) == 0) return std::strtoull(argv[i] + prefix.size(), nullptr, 10);
  }
  return fallback;
}

}  // namespace weightd::bench
