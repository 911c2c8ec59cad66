#include "client/weightctl/checkpoint_quantizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "client/weightctl/mapped_checkpoint.h"
#include "client/weightctl/output_files.h"
#include "client/weightctl/shard_reader.h"
#include "client/weightctl/vllm_reference.h"
#include "kernels/quantize_fast.h"
#include "services/load/planner.h"
#include "services/load/quant_config.h"
#include "services/safetensors/writer.h"
#include "services/sources/checkpoint_dir.h"

namespace weightd::ctl {
namespace {
namespace fs = std::filesystem;

constexpr uint64_t kCopyChunk = uint64_t{8} << 20;
constexpr char kIndexName[] = "model.safetensors.index.json";

struct Input {
  CheckpointFiles files;
  bool is_dir = false;
  bool sharded = false;
  std::string index_json;
  std::vector<ShardReader> readers;
};

absl::StatusOr<Input> OpenInput(const std::string& in) {
  Input input;
  std::error_code ec;
  const fs::path path = fs::absolute(in, ec).lexically_normal();
  input.is_dir = fs::is_directory(path, ec);
  // The daemon's resolution (index, single file, or every shard), rooted at the input itself.
  const std::string root = input.is_dir ? path.string() : path.parent_path().string();
  WEIGHTD_ASSIGN_OR_RETURN(input.files, FindCheckpoint(root, path.string()));
  input.sharded = !input.files.weight_map.empty() || input.files.shards.size() > 1;
  if (input.is_dir) {
    std::ifstream index(input.files.dir + "/" + kIndexName, std::ios::binary);
    std::stringstream text;
    text << index.rdbuf();
    input.index_json = text.str();
  }
  for (const std::string& shard : input.files.shards) {
    WEIGHTD_ASSIGN_OR_RETURN(ShardReader reader, ShardReader::Open(input.files.dir + "/" + shard, shard));
    input.readers.push_back(std::move(reader));
  }
  return input;
}

safetensors::TensorSpec SpecOf(const OutputTensor& t) { return {t.name, t.dtype, t.shape}; }

absl::Status Append(safetensors::SafetensorsWriter& writer, const void* bytes, size_t size) {
  return writer.Append(std::string_view(static_cast<const char*>(bytes), size));
}

// Reused across tensors, so memory stays at the largest tensor's.
struct Buffers {
  std::vector<uint8_t> source, fp8;
  std::vector<float> scales;
};

class ShardQuantizer {
 public:
  ShardQuantizer(const QuantizeOptions& options, const RankPlan& rank, QuantizeSummary& summary, uint64_t total_bytes,
                 uint32_t total_tensors)
      : options_(options), rank_(rank), summary_(summary), total_bytes_(total_bytes), total_tensors_(total_tensors) {}

  absl::Status Write(const ShardReader& reader, const std::vector<TensorTask>& tasks, const std::string& path) {
    std::vector<safetensors::TensorSpec> specs;
    for (const TensorTask& task : tasks) {
      specs.push_back(SpecOf(rank_.tensors[task.output]));
      if (task.kind == TaskKind::kQuantize) specs.push_back(SpecOf(rank_.tensors[task.scale]));
    }
    WEIGHTD_ASSIGN_OR_RETURN(auto writer,
                             safetensors::SafetensorsWriter::Create(path, std::move(specs), reader.header().metadata));
    for (size_t i = 0; i < tasks.size(); ++i) {
      const safetensors::TensorHeader& t = reader.header().tensors[i];
      if (tasks[i].kind == TaskKind::kQuantize) {
        WEIGHTD_RETURN_IF_ERROR(Quantize(reader, t, tasks[i], *writer));
        ++summary_.quantized;
      } else {
        WEIGHTD_RETURN_IF_ERROR(Copy(reader, t, *writer));
      }
      summary_.source_bytes += t.size();
      ++summary_.tensors;
      if (options_.progress) options_.progress(summary_.source_bytes, total_bytes_, summary_.tensors, total_tensors_);
    }
    summary_.output_bytes += writer->data_size();
    return writer->Close();
  }

 private:
  absl::Status Copy(const ShardReader& reader, const safetensors::TensorHeader& t,
                    safetensors::SafetensorsWriter& writer) {
    buffers_.source.resize(std::min<uint64_t>(t.size(), kCopyChunk));
    for (uint64_t done = 0; done < t.size();) {
      const uint64_t n = std::min<uint64_t>(t.size() - done, kCopyChunk);
      WEIGHTD_RETURN_IF_ERROR(reader.Read(t, done, n, buffers_.source.data()));
      WEIGHTD_RETURN_IF_ERROR(Append(writer, buffers_.source.data(), n));
      done += n;
    }
    return absl::OkStatus();
  }

  absl::Status Quantize(const ShardReader& reader, const safetensors::TensorHeader& t, const TensorTask& task,
                        safetensors::SafetensorsWriter& writer) {
    const kernels::Tiling& tiling = task.tiling;
    buffers_.source.resize(t.size());
    WEIGHTD_RETURN_IF_ERROR(reader.Read(t, 0, t.size(), buffers_.source.data()));
    buffers_.scales.resize(tiling.num_tiles());
    absl::Status scaled = kernels::TileScalesFast(task.scheme, t.dtype, buffers_.source.data(), tiling,
                                                  options_.policy, buffers_.scales.data());
    if (!scaled.ok()) {
      // The same message as a load of the checkpoint gives.
      const size_t i = kernels::FindNonFinite(t.dtype, buffers_.source.data(), t.num_elements());
      const uint64_t at = reader.header().data_start() + t.begin + i * kernels::DTypeSize(t.dtype);
      return absl::InvalidArgumentError(absl::StrCat("shard '", reader.name(), "': tensor '", t.name,
                                                     "': non-finite value at element ", i, " (file byte offset ",
                                                     at, ")"));
    }
    buffers_.fp8.resize(t.num_elements());
    kernels::QuantizeRowsFast(t.dtype, buffers_.source.data(), tiling, buffers_.scales.data(), 0, tiling.rows,
                              buffers_.fp8.data());
    WEIGHTD_RETURN_IF_ERROR(Append(writer, buffers_.fp8.data(), buffers_.fp8.size()));
    return Append(writer, buffers_.scales.data(), buffers_.scales.size() * sizeof(float));
  }

  const QuantizeOptions& options_;
  const RankPlan& rank_;
  QuantizeSummary& summary_;
  uint64_t total_bytes_;
  uint32_t total_tensors_;
  Buffers buffers_;
};

// Layout vllm: the fused reference of the whole checkpoint (tp 1, unpadded), one file.
absl::Status WriteVllmLayout(const std::string& in, const std::string& path, const QuantizeOptions& options,
                             QuantizeSummary& summary) {
  WEIGHTD_ASSIGN_OR_RETURN(std::unique_ptr<MappedCheckpoint> source, MappedCheckpoint::Open(in));
  WEIGHTD_ASSIGN_OR_RETURN(OutputLayout layout, OutputLayout::Create(options.scheme, options.ignore));
  WEIGHTD_ASSIGN_OR_RETURN(ShardingRules rules, ShardingRules::Create({}));
  RankReferenceOptions reference;
  reference.policy = options.policy;
  WEIGHTD_ASSIGN_OR_RETURN(std::vector<ExpectedOutput> outputs,
                           VllmRankReference(layout, rules, reference, *source, /*pad_vocab=*/false));
  std::vector<safetensors::TensorSpec> specs;
  for (const ExpectedOutput& out : outputs) specs.push_back({out.spec.name, out.spec.dtype, out.spec.shape});
  WEIGHTD_ASSIGN_OR_RETURN(auto writer, safetensors::SafetensorsWriter::Create(path, std::move(specs)));
  for (size_t i = 0; i < outputs.size(); ++i) {
    WEIGHTD_RETURN_IF_ERROR(writer->Append(outputs[i].bytes));
    summary.output_bytes += outputs[i].bytes.size();
    if (outputs[i].spec.dtype == kernels::DType::kF8E4M3) ++summary.quantized;
  }
  return writer->Close();
}

}  // namespace

absl::StatusOr<QuantizeSummary> QuantizeCheckpoint(const std::string& in, const std::string& out_dir,
                                                   const QuantizeOptions& options) {
  WEIGHTD_ASSIGN_OR_RETURN(Input input, OpenInput(in));
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("create ", out_dir, ": ", ec.message()));
  if (fs::equivalent(out_dir, input.files.dir, ec)) {
    return absl::InvalidArgumentError("the output directory must differ from the input's directory");
  }

  // The daemon's plan of the same checkpoint, on one virtual device with no padding.
  std::vector<ShardInput> shards;
  for (const ShardReader& reader : input.readers) shards.push_back({reader.name(), reader.header()});
  PlanOptions plan_options;
  plan_options.scheme = options.scheme;
  plan_options.ignore = options.ignore;
  plan_options.devices = {0};
  plan_options.device_granularity = {1};
  plan_options.layout = options.layout;
  WEIGHTD_ASSIGN_OR_RETURN(LoadPlan plan, PlanLoad(shards, plan_options));
  WEIGHTD_ASSIGN_OR_RETURN(std::string config,
                           ConfigWithQuantization(input.files.config_json, options.scheme, plan.ignored_modules));

  QuantizeSummary summary;
  std::map<std::string, std::string> weight_map;
  if (options.layout == v1::LAYOUT_VLLM) {
    WEIGHTD_RETURN_IF_ERROR(WriteVllmLayout(in, out_dir + "/model.safetensors", options, summary));
    summary.tensors = plan.source_tensors;
    summary.source_bytes = plan.source_bytes;
    summary.files.push_back("model.safetensors");
    input.sharded = false;  // one file: no index
  } else {
    ShardQuantizer quantizer(options, plan.ranks[0], summary, plan.source_bytes, plan.source_tensors);
    for (size_t s = 0; s < input.readers.size(); ++s) {
      const std::string name = input.sharded ? input.readers[s].name() : "model.safetensors";
      WEIGHTD_RETURN_IF_ERROR(quantizer.Write(input.readers[s], plan.tasks[s], out_dir + "/" + name));
      summary.files.push_back(name);
      for (const TensorTask& task : plan.tasks[s]) {
        weight_map[plan.ranks[0].tensors[task.output].name] = name;
        if (task.kind == TaskKind::kQuantize) weight_map[plan.ranks[0].tensors[task.scale].name] = name;
      }
    }
  }
  if (input.sharded) {
    WEIGHTD_RETURN_IF_ERROR(WriteTextFile(out_dir + "/" + kIndexName,
                                          BuildIndexJson(input.index_json, weight_map, summary.output_bytes)));
    summary.files.push_back(kIndexName);
  }
  if (!config.empty()) {
    WEIGHTD_RETURN_IF_ERROR(WriteTextFile(out_dir + "/config.json", config));
    summary.files.push_back("config.json");
  }
  if (input.is_dir) {
    WEIGHTD_ASSIGN_OR_RETURN(std::vector<std::string> copied,
                             CopySmallFiles(input.files.dir, out_dir, {kIndexName, "config.json"}));
    summary.files.insert(summary.files.end(), copied.begin(), copied.end());
  }
  return summary;
}

}  // namespace weightd::ctl
