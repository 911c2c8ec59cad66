#include "bench/gen/shard_bytes.h"

#include <algorithm>
#include <cstring>

#include "nlohmann/json.hpp"

namespace weightd::bench {

std::string SafetensorsPrefix(const CheckpointPlan& plan, int shard) {
  nlohmann::ordered_json header;
  header["__metadata__"] = {{"format", "pt"}};
  for (const PlannedTensor& t : plan.tensors) {
    if (t.shard != shard) continue;
    header[t.desc.name] = {{"dtype", std::string(kernels::DTypeName(t.dtype))},
                           {"shape", t.desc.shape},
                           {"data_offsets", {t.byte_offset, t.byte_offset + t.byte_size}}};
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');
  std::string prefix(8, '\0');
  for (int b = 0; b < 8; ++b) prefix[b] = static_cast<char>(uint64_t{json.size()} >> (8 * b));
  return prefix + json;
}

ShardByteSource::ShardByteSource(const GenOptions& options, const CheckpointPlan& plan, int shard)
    : options_(options), prefix_(SafetensorsPrefix(plan, shard)) {
  for (const PlannedTensor& t : plan.tensors) {
    if (t.shard != shard) continue;
    tensors_.push_back(&t);
    data_bytes_ += t.byte_size;
  }
}

// Any byte range of a tensor: whole elements straight into `out`, a partial
// element at either end through a small scratch.
void ShardByteSource::FillTensorBytes(const PlannedTensor& tensor, uint64_t byte_offset,
                                      std::span<uint8_t> out) {
  const size_t element_size = kernels::DTypeSize(tensor.dtype);
  if (options_.fast_fill && fast_for_ != tensor_) {
    fast_ = std::make_unique<FastTensorFill>(options_.seed, tensor.desc.name, tensor.dtype);
    fast_for_ = tensor_;
  }
  auto fill = [&](uint64_t element, std::span<uint8_t> bytes) {
    if (options_.fast_fill) {
      fast_->Fill(element, bytes);
    } else {
      FillTensor(options_.seed, tensor.desc.name, tensor.dtype, element, bytes);
    }
  };
  while (!out.empty()) {
    const uint64_t element = byte_offset / element_size;
    const size_t skip = static_cast<size_t>(byte_offset % element_size);
    if (skip == 0 && out.size() >= element_size) {
      const size_t whole = out.size() - out.size() % element_size;
      fill(element, out.first(whole));
      out = out.subspan(whole);
      byte_offset += whole;
      continue;
    }
    uint8_t scratch[8];
    fill(element, std::span<uint8_t>(scratch, element_size));
    const size_t take = std::min(out.size(), element_size - skip);
    std::memcpy(out.data(), scratch + skip, take);
    out = out.subspan(take);
    byte_offset += take;
  }
}

size_t ShardByteSource::Read(std::span<uint8_t> out) {
  size_t done = 0;
  while (done < out.size() && position_ < size()) {
    std::span<uint8_t> rest = out.subspan(done);
    if (position_ < prefix_.size()) {
      const size_t n = std::min<uint64_t>(rest.size(), prefix_.size() - position_);
      std::memcpy(rest.data(), prefix_.data() + position_, n);
      position_ += n;
      done += n;
      continue;
    }
    const uint64_t data_position = position_ - prefix_.size();
    while (tensors_[tensor_]->byte_offset + tensors_[tensor_]->byte_size <= data_position) ++tensor_;
    const PlannedTensor& t = *tensors_[tensor_];
    const uint64_t within = data_position - t.byte_offset;
    const size_t n = std::min<uint64_t>(rest.size(), t.byte_size - within);
    FillTensorBytes(t, within, rest.first(n));
    position_ += n;
    done += n;
  }
  return done;
}

}  // namespace weightd::bench
