#include "tests/e2e/checkpoint_files.h"

#include <filesystem>
#include <fstream>
#include <iterator>

namespace weightd::testing {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

std::string Shard(const std::string& header, const std::string& data, int64_t length_override) {
  uint64_t n = length_override >= 0 ? static_cast<uint64_t>(length_override) : header.size();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

std::string ShardOf(const std::map<std::string, RawTensor>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  for (const auto& [name, t] : tensors) {
    header[name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data += t.bytes;
  }
  return Shard(header.dump(), data);
}

namespace {

uint64_t HeaderLength(const std::string& file) {
  uint64_t n = 0;
  for (int i = 0; i < 8 && i < static_cast<int>(file.size()); ++i) {
    n |= static_cast<uint64_t>(static_cast<unsigned char>(file[i])) << (8 * i);
  }
  return n;
}

}  // namespace

nlohmann::json SafetensorsHeader(const std::string& path) {
  const std::string file = ReadFile(path);
  nlohmann::json header = nlohmann::json::parse(file.substr(8, HeaderLength(file)), nullptr, false);
  if (header.is_object()) header.erase("__metadata__");
  return header;
}

nlohmann::json CheckpointTensors(const std::string& dir) {
  nlohmann::json all = nlohmann::json::object();
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".safetensors") continue;
    all.update(SafetensorsHeader(entry.path().string()));
  }
  return all;
}

std::string TensorBytes(const std::string& path, const std::string& name) {
  const std::string file = ReadFile(path);
  const uint64_t length = HeaderLength(file);
  const nlohmann::json header = nlohmann::json::parse(file.substr(8, length), nullptr, false);
  if (!header.is_object() || !header.contains(name)) return "";
  const uint64_t begin = header[name]["data_offsets"][0], end = header[name]["data_offsets"][1];
  return file.substr(8 + length + begin, end - begin);
}

}  // namespace weightd::testing
