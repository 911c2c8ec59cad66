// Decides, by name, dtype and shape, what happens to each checkpoint tensor:
// stored as it came, or quantized to FP8. Linear-layer 2-D weights are
// quantized; embeddings, lm_head, norms, biases, MoE router gates and anything
// not 2-D are not; an ignore list (exact names or "re:" regular expressions in
// RE2 syntax, each matching the whole tensor name or the whole module name)
// overrides. Immutable
// after construction, so thread-safe.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kernels/dtype.h"
#include "services/load/name_pattern.h"

namespace weightd {

class TensorSelection {
 public:
  // INVALID_ARGUMENT for a malformed or too long regular expression, naming it.
  static absl::StatusOr<TensorSelection> Create(bool quantize, const std::vector<std::string>& ignore);

  bool ShouldQuantize(absl::string_view name, kernels::DType dtype,
                      const std::vector<int64_t>& shape) const;
  bool Ignored(absl::string_view name) const;

 private:
  bool quantize_ = true;
  std::vector<std::string> exact_;
  std::vector<NamePattern> patterns_;
};

}  // namespace weightd
