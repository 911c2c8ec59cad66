#include "services/load/tensor_split.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace weightd {
namespace {

std::string Describe(const std::string& name, const std::vector<int64_t>& shape) {
  return absl::StrCat("tensor '", name, "' [", absl::StrJoin(shape, ", "), "]");
}

bool IsKeyValue(const std::string& name) {
  for (const char* module : {"k_proj.", "v_proj."}) {
    size_t at = name.rfind(module);
    if (at == std::string::npos || (at > 0 && name[at - 1] != '.')) continue;
    std::string_view leaf = std::string_view(name).substr(at + 7);
    if (leaf == "weight" || leaf == "bias") return true;
  }
  return false;
}

bool IsQuery(const std::string& name) {
  return absl::EndsWith(name, ".q_proj.weight") || absl::EndsWith(name, ".q_proj.bias");
}

// Split points (every begin but the first, and every end short of `size`) on `align`.
absl::Status CheckAlignment(const std::string& what, const TensorSplit& split, int64_t size, int64_t align) {
  if (align <= 1) return absl::OkStatus();
  for (size_t r = 0; r < split.begin.size(); ++r) {
    const int64_t end = split.begin[r] + split.length[r];
    for (int64_t point : {split.begin[r], end}) {
      if (point != 0 && point != size && point % align != 0) {
        return absl::InvalidArgumentError(absl::StrCat(what, ": the block scheme needs split points on multiples of ",
                                                       align, ", but dim ", split.dim, " (", size, ") splits at ",
                                                       point, " for tp_size ", split.begin.size()));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<TensorSplit> SplitKeyValue(const std::string& what, const std::vector<int64_t>& shape, uint32_t tp,
                                          int64_t kv_heads) {
  const int64_t rows = shape[0];
  if (rows % kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": dim 0 (", rows, ") is not a multiple of num_key_value_heads ",
                                                   kv_heads));
  }
  const int64_t head_rows = rows / kv_heads;
  TensorSplit split{SplitKind::kColumn, 0, {}, {}};
  if (kv_heads >= tp) {
    if (kv_heads % tp != 0) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": num_key_value_heads ", kv_heads,
                                                     " is not divisible by tp_size ", tp));
    }
    for (uint32_t r = 0; r < tp; ++r) {
      split.begin.push_back(r * (rows / tp));
      split.length.push_back(rows / tp);
    }
    return split;
  }
  if (tp % kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": tp_size ", tp, " is not a multiple of num_key_value_heads ",
                                                   kv_heads, " (ranks sharing a key/value head must be equally many)"));
  }
  for (uint32_t r = 0; r < tp; ++r) {
    const int64_t head = static_cast<int64_t>(r) * kv_heads / tp;
    split.begin.push_back(head * head_rows);
    split.length.push_back(head_rows);
  }
  return split;
}

absl::StatusOr<TensorSplit> SplitEvenly(const std::string& what, const std::vector<int64_t>& shape, SplitRule rule,
                                        int dim, uint32_t tp, int64_t align) {
  const int64_t size = shape[dim];
  TensorSplit split{rule.kind, dim, {}, {}};
  int64_t part = size / tp;
  if (size % tp != 0 && !rule.allow_uneven) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": dim ", dim, " (", size, ") is not divisible by tp_size ", tp));
  }
  // Unequal parts are allowed: ceil-sized, and rounded up to the alignment.
  if (rule.allow_uneven && (size % tp != 0 || part % align != 0)) {
    part = (size + tp - 1) / tp;
    part = (part + align - 1) / align * align;
  }
  for (uint32_t r = 0; r < tp; ++r) {
    const int64_t begin = std::min<int64_t>(size, r * part);
    const int64_t length = std::min<int64_t>(part, size - begin);
    if (length == 0) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": dim ", dim, " (", size, ") leaves rank ", r,
                                                     " of tp_size ", tp, " empty"));
    }
    split.begin.push_back(begin);
    split.length.push_back(length);
  }
  return split;
}

absl::StatusOr<int64_t> PositiveCount(const nlohmann::json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return 0;
  if (!it->is_number_integer() || it->get<int64_t>() <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("config.json: ", key, " is ", it->dump(), ", not a positive integer"));
  }
  return it->get<int64_t>();
}

}  // namespace

absl::StatusOr<AttentionHeads> AttentionHeadsFromConfig(std::string_view config_json) {
  AttentionHeads heads;
  if (config_json.empty()) return heads;
  nlohmann::json config = nlohmann::json::parse(config_json, nullptr, /*allow_exceptions=*/false);
  if (!config.is_object()) return absl::InvalidArgumentError("config.json is not a JSON object");
  auto n = PositiveCount(config, "num_attention_heads");
  if (!n.ok()) return n.status();
  auto kv = PositiveCount(config, "num_key_value_heads");
  if (!kv.ok()) return kv.status();
  heads.heads = *n;
  heads.kv_heads = *kv != 0 ? *kv : *n;
  return heads;
}

std::vector<int64_t> TensorSplit::SliceShape(const std::vector<int64_t>& shape, size_t rank) const {
  std::vector<int64_t> slice = shape;
  if (dim >= 0) slice[dim] = length[rank];
  return slice;
}

SliceBytes SliceBytesOf(const TensorSplit& split, size_t rank, const std::vector<int64_t>& shape,
                        size_t element_size) {
  uint64_t elements = 1;
  for (int64_t d : shape) elements *= static_cast<uint64_t>(d);
  if (split.replicated()) return SliceBytes{0, 1, elements * element_size, 0};
  uint64_t outer = 1, inner = element_size;
  for (int d = 0; d < split.dim; ++d) outer *= static_cast<uint64_t>(shape[d]);
  for (size_t d = split.dim + 1; d < shape.size(); ++d) inner *= static_cast<uint64_t>(shape[d]);
  const uint64_t extent = static_cast<uint64_t>(shape[split.dim]);
  SliceBytes slice{static_cast<uint64_t>(split.begin[rank]) * inner, outer,
                   static_cast<uint64_t>(split.length[rank]) * inner, extent * inner};
  if (static_cast<uint64_t>(split.length[rank]) == extent) {  // whole rows of the outer dims: one range
    slice.segment_bytes *= outer;
    slice.segments = 1;
  }
  return slice;
}

void GatherSlice(const SliceBytes& slice, const char* src, char* dst) {
  for (uint64_t s = 0; s < slice.segments; ++s) {
    std::memcpy(dst + s * slice.segment_bytes, src + slice.first + s * slice.stride, slice.segment_bytes);
  }
}

absl::StatusOr<TensorSplit> SplitTensor(const std::string& name, const std::vector<int64_t>& shape, SplitRule rule,
                                        uint32_t tp, const AttentionHeads& heads, int64_t align) {
  int dim = -1;
  if (rule.kind == SplitKind::kColumn || rule.kind == SplitKind::kVocab) dim = 0;
  if (rule.kind == SplitKind::kRow && shape.size() >= 2) dim = 1;
  if (dim < 0 || shape.empty()) return TensorSplit{rule.kind, -1, {}, {}};
  const std::string what = Describe(name, shape);
  TensorSplit split;
  if (rule.kind == SplitKind::kColumn && heads.kv_heads > 0 && IsKeyValue(name)) {
    auto kv = SplitKeyValue(what, shape, tp, heads.kv_heads);
    if (!kv.ok()) return kv.status();
    split = std::move(*kv);
  } else {
    if (rule.kind == SplitKind::kColumn && heads.heads > 0 && IsQuery(name) && heads.heads % tp != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": num_attention_heads ", heads.heads, " is not divisible by tp_size ", tp));
    }
    auto even = SplitEvenly(what, shape, rule, dim, tp, align);
    if (!even.ok()) return even.status();
    split = std::move(*even);
  }
  absl::Status aligned = CheckAlignment(what, split, shape[dim], align);
  if (!aligned.ok()) return aligned;
  return split;
}

}  // namespace weightd
