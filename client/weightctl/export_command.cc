// weightctl export: maps a rank's memory through the handle socket, as a worker
// does, and writes it out as a safetensors checkpoint plus config.json.
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "base/byte_size.h"
#include "base/status_macros.h"
#include "client/cpp/client.h"
#ifdef WEIGHTD_HAVE_CUDA
#include <cuda_runtime.h>
#endif
#include "client/weightctl/cli.h"
#include "kernels/dtype.h"
#include "services/safetensors/writer.h"

namespace weightd::ctl {
namespace {

// The bytes of one tensor on the host: the mapping itself for host devices, a
// copy for GPU memory.
absl::StatusOr<std::string_view> HostBytes(const client::TensorView& tensor, std::vector<uint8_t>* copy) {
  if (tensor.device_kind != v1::DEVICE_KIND_CUDA) {
    return std::string_view(static_cast<const char*>(tensor.data), tensor.size_bytes);
  }
#ifdef WEIGHTD_HAVE_CUDA
  copy->resize(tensor.size_bytes);
  if (cudaMemcpy(copy->data(), tensor.data, tensor.size_bytes, cudaMemcpyDeviceToHost) != cudaSuccess) {
    return absl::InternalError(absl::StrCat("copy of ", tensor.name, " from GPU ", tensor.device, " failed"));
  }
  return std::string_view(reinterpret_cast<const char*>(copy->data()), copy->size());
#else
  return absl::UnimplementedError(absl::StrCat("export of GPU memory needs a weightctl built with CUDA"));
#endif
}

absl::Status Export(const CliOptions& options, const std::string& model, const std::string& out_dir) {
  uint32_t rank = options.rank < 0 ? 0 : static_cast<uint32_t>(options.rank);
  client::Client daemon({.address = options.address, .tls = options.tls, .handle_socket = options.handle_socket});
  WEIGHTD_ASSIGN_OR_RETURN(v1::Manifest manifest, daemon.Manifest(model));
  // Maps the rank's memory as a worker does (GPU allocations are imported).
  WEIGHTD_ASSIGN_OR_RETURN(client::Mapping mapping, daemon.Attach(model, rank));
  const v1::RankManifest& rank_manifest = mapping.manifest();

  std::vector<safetensors::TensorSpec> specs;
  for (const v1::TensorEntry& tensor : rank_manifest.tensors()) {
    std::optional<kernels::DType> dtype = kernels::ParseDType(tensor.dtype());
    if (!dtype) return absl::DataLossError(absl::StrCat("manifest gives ", tensor.name(), " dtype ", tensor.dtype()));
    specs.push_back({tensor.name(), *dtype, {tensor.shape().begin(), tensor.shape().end()}});
  }
  std::filesystem::create_directories(out_dir);
  WEIGHTD_ASSIGN_OR_RETURN(auto writer, safetensors::SafetensorsWriter::Create(out_dir + "/model.safetensors", specs));
  std::vector<uint8_t> copy;
  for (const client::TensorView& tensor : mapping.tensors()) {
    WEIGHTD_ASSIGN_OR_RETURN(std::string_view bytes, HostBytes(tensor, &copy));
    WEIGHTD_RETURN_IF_ERROR(writer->Append(bytes));
  }
  WEIGHTD_RETURN_IF_ERROR(writer->Close());
  std::ofstream config(out_dir + "/config.json", std::ios::binary | std::ios::trunc);
  config << manifest.config_json();
  if (!config) return absl::InternalError(absl::StrCat("cannot write ", out_dir, "/config.json"));
  std::printf("exported %s rank %u: %d tensors, %s, to %s\n", model.c_str(), rank, rank_manifest.tensors_size(),
              FormatByteSize(writer->data_size()).c_str(), out_dir.c_str());
  return absl::OkStatus();
}

}  // namespace

int RunExport(const CliOptions& options, const Args& args) {
  if (args.size() != 2) return Usage("weightctl export MODEL DIR [--rank R]");
  absl::Status status = Export(options, args[0], args[1]);
  if (!status.ok()) return ReportError(status);
  return 0;
}

}  // namespace weightd::ctl
