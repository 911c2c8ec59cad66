#include "client/cpp/chunk_wire.h"

#include "weightd/v1/loader.pb.h"

namespace weightd::client {

std::string OpenMessage(const std::string& model_id, const std::string& shard_file, uint64_t size) {
  v1::ShardChunk first;
  first.mutable_open()->set_model_id(model_id);
  first.mutable_open()->set_shard_file(shard_file);
  first.mutable_open()->set_size(size);
  return first.SerializeAsString();
}

std::string DataFieldPrefix(uint64_t length) {
  std::string prefix(1, '\x12');
  for (uint64_t v = length;; v >>= 7) {
    prefix.push_back(static_cast<char>((v & 0x7f) | (v >= 0x80 ? 0x80 : 0)));
    if (v < 0x80) break;
  }
  return prefix;
}

}  // namespace weightd::client
