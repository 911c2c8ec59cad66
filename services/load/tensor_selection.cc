#include "services/load/tensor_selection.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace weightd {
namespace {

// Default exclusions, by the naming of Llama, Qwen, Mistral, DeepSeek, GPT-style checkpoints.
bool ExcludedByDefault(absl::string_view name) {
  static const char* const kParts[] = {"embed", "lm_head", "norm", "wte", "wpe", "router"};
  for (const char* part : kParts) {
    if (absl::StrContains(name, part)) return true;
  }
  // MoE router gate: `mlp.gate.weight`, unlike the dense `mlp.gate_proj.weight`.
  return absl::EndsWith(name, ".gate.weight") || name == "gate.weight";
}

absl::string_view ModuleName(absl::string_view name) {
  if (absl::EndsWith(name, ".weight")) name.remove_suffix(7);
  return name;
}

}  // namespace

absl::StatusOr<TensorSelection> TensorSelection::Create(bool quantize,
                                                        const std::vector<std::string>& ignore) {
  TensorSelection selection;
  selection.quantize_ = quantize;
  for (const std::string& entry : ignore) {
    if (absl::StartsWith(entry, "re:")) {
      auto pattern = NamePattern::Compile(absl::string_view(entry).substr(3), entry);
      if (!pattern.ok()) return absl::InvalidArgumentError(absl::StrCat("ignore ", pattern.status().message()));
      selection.patterns_.push_back(*std::move(pattern));
    } else {
      selection.exact_.push_back(entry);
    }
  }
  return selection;
}

bool TensorSelection::Ignored(absl::string_view name) const {
  absl::string_view module = ModuleName(name);
  for (const std::string& exact : exact_) {
    if (exact == name || exact == module) return true;
  }
  for (const NamePattern& pattern : patterns_) {
    if (pattern.FullMatch(name) || pattern.FullMatch(module)) return true;
  }
  return false;
}

bool TensorSelection::ShouldQuantize(absl::string_view name, kernels::DType dtype,
                                     const std::vector<int64_t>& shape) const {
  if (!quantize_) return false;
  if (!kernels::IsQuantizable(dtype)) return false;  // FP8 already, or not floating point: passes through
  if (shape.size() != 2 || !absl::EndsWith(name, ".weight")) return false;
  if (ExcludedByDefault(name)) return false;
  return !Ignored(name);
}

}  // namespace weightd
