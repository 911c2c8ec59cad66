// What a test can know about a checkpoint directory on its own, without the daemon:
// its safetensors shard files and their sizes. Header-only; thread-safe.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace weightd::testing {

// The directory's *.safetensors files, sorted.
inline std::vector<std::string> Shards(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() == ".safetensors") out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Every byte of every shard file, headers included.
inline uint64_t ShardBytes(const std::string& dir) {
  uint64_t total = 0;
  for (const std::string& f : Shards(dir)) total += std::filesystem::file_size(f);
  return total;
}

// The tensor bytes of every shard: each file less its 8-byte length and JSON header.
inline uint64_t ShardDataBytes(const std::string& dir) {
  uint64_t total = 0;
  for (const std::string& f : Shards(dir)) {
    std::ifstream in(f, std::ios::binary);
    char prefix[8] = {};
    in.read(prefix, 8);
    uint64_t header = 0;
    std::memcpy(&header, prefix, 8);
    total += std::filesystem::file_size(f) - 8 - header;
  }
  return total;
}

}  // namespace weightd::testing
