#include "services/load/engine_layout.h"

#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace weightd {
namespace {

struct Fusion {
  const char* module;  // the checkpoint's module name
  const char* fused;   // vLLM's
  size_t part;
  size_t parts;
  const char* members;
};

constexpr Fusion kFusions[] = {
    {"q_proj", "qkv_proj", 0, 3, "q_proj, k_proj, v_proj"},
    {"k_proj", "qkv_proj", 1, 3, "q_proj, k_proj, v_proj"},
    {"v_proj", "qkv_proj", 2, 3, "q_proj, k_proj, v_proj"},
    {"gate_proj", "gate_up_proj", 0, 2, "gate_proj, up_proj"},
    {"up_proj", "gate_up_proj", 1, 2, "gate_proj, up_proj"},
};

// "X.module.leaf" -> {X, module, leaf}; false when `name` has fewer than two dots' parts.
bool SplitName(const std::string& name, std::string& prefix, std::string& module, std::string& leaf) {
  const size_t leaf_dot = name.rfind('.');
  if (leaf_dot == std::string::npos || leaf_dot == 0) return false;
  const size_t module_dot = name.rfind('.', leaf_dot - 1);
  const size_t module_begin = module_dot == std::string::npos ? 0 : module_dot + 1;
  prefix = module_dot == std::string::npos ? "" : name.substr(0, module_dot + 1);
  module = name.substr(module_begin, leaf_dot - module_begin);
  leaf = name.substr(leaf_dot + 1);
  return true;
}

}  // namespace

std::optional<FusedPart> VllmFusedPart(const std::string& name) {
  std::string prefix, module, leaf;
  if (!SplitName(name, prefix, module, leaf) || (leaf != "weight" && leaf != "bias")) return std::nullopt;
  for (const Fusion& f : kFusions) {
    if (module == f.module) return FusedPart{absl::StrCat(prefix, f.fused, ".", leaf), f.part, f.parts, f.members};
  }
  return std::nullopt;
}

std::string VllmPartName(const std::string& name, const FusedPart& fused_part, size_t part) {
  std::string prefix, module, leaf;
  SplitName(name, prefix, module, leaf);
  for (const Fusion& f : kFusions) {
    if (std::string_view(f.members) == fused_part.members && f.part == part) {
      return absl::StrCat(prefix, f.module, ".", leaf);
    }
  }
  return name;
}

int64_t VllmPaddedRowsPerRank(int64_t rows, uint32_t tp) {
  const int64_t padded = (rows + kVllmVocabPadding - 1) / kVllmVocabPadding * kVllmVocabPadding;
  return padded / tp;
}

absl::StatusOr<TensorSplit> VllmVocabSplit(const std::string& name, const std::vector<int64_t>& shape, uint32_t tp) {
  const std::string what = absl::StrCat("tensor '", name, "' [", absl::StrJoin(shape, ", "), "]");
  if (shape.empty()) return absl::InvalidArgumentError(absl::StrCat(what, ": a vocab tensor has at least one dimension"));
  const int64_t rows = shape[0];
  const int64_t padded = (rows + kVllmVocabPadding - 1) / kVllmVocabPadding * kVllmVocabPadding;
  if (padded % tp != 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": layout vllm pads dim 0 to ", padded,
                                                   " rows, which tp_size ", tp, " does not divide"));
  }
  const int64_t per = padded / tp;
  TensorSplit split{SplitKind::kVocab, 0, {}, {}};
  for (uint32_t r = 0; r < tp; ++r) {
    const int64_t begin = r * per;
    if (begin >= rows) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": layout vllm leaves rank ", r, " of tp_size ", tp,
                                                     " only padding rows"));
    }
    split.begin.push_back(begin);
    split.length.push_back(std::min(per, rows - begin));
  }
  return split;
}

}  // namespace weightd
