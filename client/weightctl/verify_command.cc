// weightctl verify: checks an export or a `weightctl quantize` output (any FP8
// checkpoint weightd wrote) byte for byte against the CPU reference applied to
// the original checkpoint, under any scheme; with --tp N --rank R, an export of
// rank R against the reference sliced as the daemon slices (docs/tensor-parallel.md).
#include <cstdio>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "client/weightctl/cli.h"
#include "client/weightctl/mapped_checkpoint.h"
#include "client/weightctl/rank_reference.h"
#include "client/weightctl/tp_rules_file.h"
#include "client/weightctl/vllm_reference.h"
#include "services/load/output_layout.h"

namespace weightd::ctl {
namespace {

absl::Status ExpectBytes(const std::string& name, const MappedTensor& actual, kernels::DType dtype,
                         const std::vector<int64_t>& shape, const uint8_t* expected, size_t size) {
  if (actual.header.dtype != dtype || actual.header.shape != shape || actual.header.size() != size) {
    return absl::FailedPreconditionError(absl::StrCat(name, ": export has ", kernels::DTypeName(actual.header.dtype),
                                                      " of ", actual.header.size(), " bytes, expected ",
                                                      kernels::DTypeName(dtype), " of ", size, " bytes"));
  }
  for (size_t i = 0; i < size; ++i) {
    if (actual.bytes[i] != expected[i]) {
      return absl::FailedPreconditionError(absl::StrFormat("%s: byte %zu is 0x%02x, expected 0x%02x", name, i,
                                                           actual.bytes[i], expected[i]));
    }
  }
  return absl::OkStatus();
}

struct Counts {
  size_t quantized = 0, unchanged = 0;
};

absl::Status ExpectTensor(const MappedCheckpoint& exported, const OutputSpec& spec, const void* expected) {
  auto found = exported.tensors().find(spec.name);
  if (found == exported.tensors().end()) return absl::NotFoundError(absl::StrCat(spec.name, ": missing from the export"));
  return ExpectBytes(spec.name, found->second, spec.dtype, spec.shape, static_cast<const uint8_t*>(expected),
                     spec.size);
}

// Every output the layout (the daemon's own naming) gives each source tensor on
// the rank (--rank, of --tp ranks), with the bytes of the reference kernels
// (kernels/quantize_ref.cc) sliced as the daemon slices, and nothing else.
absl::StatusOr<Counts> Verify(const CliOptions& options, const MappedCheckpoint& source,
                              const MappedCheckpoint& exported) {
  WEIGHTD_ASSIGN_OR_RETURN(v1::Scheme scheme, ParseScheme(options.scheme));
  WEIGHTD_ASSIGN_OR_RETURN(v1::NonFinite nonfinite, ParseNonFinite(options.nonfinite));
  RankReferenceOptions rank;
  rank.policy =
      nonfinite == v1::NONFINITE_SATURATE ? kernels::NonFinitePolicy::kSaturate : kernels::NonFinitePolicy::kFail;
  WEIGHTD_ASSIGN_OR_RETURN(rank.scope, ParseScaleScope(options.scale_scope));
  rank.tp = options.tp_size == 0 ? 1 : options.tp_size;
  rank.rank = options.rank < 0 ? 0 : static_cast<uint32_t>(options.rank);
  if (rank.rank >= rank.tp) {
    return absl::InvalidArgumentError(absl::StrCat("--rank=", rank.rank, " is not below --tp=", rank.tp));
  }
  WEIGHTD_ASSIGN_OR_RETURN(v1::Layout engine_layout, ParseLayout(options.layout));
  if (rank.tp > 1) {
    WEIGHTD_ASSIGN_OR_RETURN(rank.heads, AttentionHeadsFromConfig(source.config_json()));
  }
  WEIGHTD_ASSIGN_OR_RETURN(OutputLayout layout, OutputLayout::Create(scheme, options.ignore));
  google::protobuf::RepeatedPtrField<v1::ShardingRule> rule_list;
  if (!options.tp_rules.empty()) {
    WEIGHTD_ASSIGN_OR_RETURN(std::vector<v1::ShardingRule> read, ReadShardingRules(options.tp_rules));
    for (v1::ShardingRule& rule : read) *rule_list.Add() = std::move(rule);
  }
  WEIGHTD_ASSIGN_OR_RETURN(ShardingRules rules, ShardingRules::Create(rule_list));
  Counts counts;
  size_t expected_tensors = 0;
  if (engine_layout == v1::LAYOUT_VLLM) {
    WEIGHTD_ASSIGN_OR_RETURN(std::vector<ExpectedOutput> outputs, VllmRankReference(layout, rules, rank, source));
    for (size_t i = 0; i < outputs.size(); ++i) {
      WEIGHTD_RETURN_IF_ERROR(ExpectTensor(exported, outputs[i].spec, outputs[i].bytes.data()));
      // A quantized output is followed by its scale, counted with it.
      if (i > 0 && outputs[i - 1].spec.dtype == kernels::DType::kF8E4M3) continue;
      ++(outputs[i].spec.dtype == kernels::DType::kF8E4M3 ? counts.quantized : counts.unchanged);
    }
    expected_tensors = outputs.size();
  }
  for (const auto& [name, tensor] : source.tensors()) {
    if (engine_layout == v1::LAYOUT_VLLM) break;
    WEIGHTD_ASSIGN_OR_RETURN(std::vector<ExpectedOutput> outputs,
                             RankReference(layout, rules, rank, tensor.header, tensor.bytes));
    for (const ExpectedOutput& output : outputs) {
      WEIGHTD_RETURN_IF_ERROR(ExpectTensor(exported, output.spec, output.bytes.data()));
    }
    expected_tensors += outputs.size();
    ++(outputs.size() > 1 ? counts.quantized : counts.unchanged);
  }
  if (exported.tensors().size() != expected_tensors) {
    return absl::FailedPreconditionError(absl::StrCat("the export has ", exported.tensors().size(),
                                                      " tensors, expected ", expected_tensors));
  }
  return counts;
}

}  // namespace

int RunVerify(const CliOptions& options, const Args& args) {
  if (args.size() != 2) {
    return Usage(
        "weightctl verify CHECKPOINT EXPORT [--scheme S] [--ignore ...] [--nonfinite fail|saturate] "
        "[--tp N --rank R [--scale-scope tensor|shard] [--tp-rules FILE]] [--layout checkpoint|vllm] [--json]");
  }
  auto source = MappedCheckpoint::Open(args[0]);
  if (!source.ok()) return ReportError(source.status());
  auto exported = MappedCheckpoint::Open(args[1]);
  if (!exported.ok()) return ReportError(exported.status());
  auto counts = Verify(options, **source, **exported);
  if (!counts.ok()) return ReportError(counts.status());
  if (options.json) {
    std::printf("{\"verified\": %zu, \"quantized\": %zu, \"unchanged\": %zu}\n",
                counts->quantized + counts->unchanged, counts->quantized, counts->unchanged);
    return 0;
  }
  std::printf("verified %zu tensors: %zu quantized equal to the CPU reference, %zu unchanged and bit-identical\n",
              counts->quantized + counts->unchanged, counts->quantized, counts->unchanged);
  return 0;
}

}  // namespace weightd::ctl
