// weightctl export: maps a rank's memory through the handle socket, as a worker
// does, and writes it out as a safetensors checkpoint plus config.json.
#include <sys/mman.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "base/byte_size.h"
#include "base/status_macros.h"
#include "client/cpp/channel.h"
#include "client/cpp/lease.h"
#ifdef WEIGHTD_HAVE_CUDA
#include <cuda_runtime.h>

#include "client/cpp/cuda_mapping.h"
#endif
#include "client/weightctl/cli.h"
#include "grpcpp/client_context.h"
#include "kernels/dtype.h"
#include "services/safetensors/writer.h"
#include "weightd/v1/loader.grpc.pb.h"

namespace weightd::ctl {
namespace {

// Unmaps on destruction.
class Mapping {
 public:
  Mapping(void* address, size_t size) : address_(address), size_(size) {}
  Mapping(Mapping&& other) noexcept : address_(std::exchange(other.address_, nullptr)), size_(other.size_) {}
  ~Mapping() {
    if (address_ != nullptr) ::munmap(address_, size_);
  }
  const uint8_t* bytes() const { return static_cast<const uint8_t*>(address_); }

 private:
  void* address_;
  size_t size_;
};

absl::Status Export(const CliOptions& options, const std::string& model, const std::string& out_dir) {
  uint32_t rank = options.rank < 0 ? 0 : static_cast<uint32_t>(options.rank);
  v1::GetManifestRequest request;
  request.set_model_id(model);
  v1::Manifest manifest;
  grpc::ClientContext context;
  auto stub = v1::Loader::NewStub(client::MakeChannel(options.address));
  WEIGHTD_RETURN_IF_ERROR(client::FromGrpc(stub->GetManifest(&context, request, &manifest)));

  WEIGHTD_ASSIGN_OR_RETURN(client::Lease lease, client::Lease::Attach(options.handle_socket, model, rank));
  const v1::RankManifest& rank_manifest = lease.manifest();
  // Host allocations are mapped; GPU allocations are imported as a worker would
  // and copied to the host.
  std::vector<Mapping> mappings;
  std::vector<std::vector<uint8_t>> copies;
  std::vector<const uint8_t*> bases;
  for (int i = 0; i < rank_manifest.allocations_size(); ++i) {
    const v1::Allocation& allocation = rank_manifest.allocations(i);
    if (allocation.handle_type() == v1::HANDLE_TYPE_MEMFD) {
      void* address = ::mmap(nullptr, allocation.size(), PROT_READ, MAP_SHARED, lease.fds()[i].get(), 0);
      if (address == MAP_FAILED) {
        return absl::InternalError(absl::StrCat("mmap of allocation ", allocation.id(), ": ", std::strerror(errno)));
      }
      mappings.emplace_back(address, allocation.size());
      bases.push_back(mappings.back().bytes());
      continue;
    }
#ifdef WEIGHTD_HAVE_CUDA
    WEIGHTD_ASSIGN_OR_RETURN(
        client::CudaMapping gpu,
        client::CudaMapping::Import(allocation, lease.fds()[i].get(), static_cast<int>(rank_manifest.device())));
    copies.emplace_back(allocation.size());
    if (cudaMemcpy(copies.back().data(), gpu.device_pointer(), allocation.size(), cudaMemcpyDeviceToHost) !=
        cudaSuccess) {
      return absl::InternalError(absl::StrCat("copy of GPU allocation ", allocation.id(), " failed"));
    }
    bases.push_back(copies.back().data());
#else
    return absl::UnimplementedError(absl::StrCat("export of ", v1::HandleType_Name(allocation.handle_type()),
                                                 " allocations needs a weightctl built with CUDA"));
#endif
  }

  std::vector<safetensors::TensorSpec> specs;
  for (const v1::TensorEntry& tensor : rank_manifest.tensors()) {
    std::optional<kernels::DType> dtype = kernels::ParseDType(tensor.dtype());
    if (!dtype) return absl::DataLossError(absl::StrCat("manifest gives ", tensor.name(), " dtype ", tensor.dtype()));
    specs.push_back({tensor.name(), *dtype, {tensor.shape().begin(), tensor.shape().end()}});
  }
  std::filesystem::create_directories(out_dir);
  WEIGHTD_ASSIGN_OR_RETURN(auto writer, safetensors::SafetensorsWriter::Create(out_dir + "/model.safetensors", specs));
  for (const v1::TensorEntry& tensor : rank_manifest.tensors()) {
    if (tensor.allocation() >= bases.size() ||
        tensor.offset() + tensor.size() > rank_manifest.allocations(tensor.allocation()).size()) {
      return absl::DataLossError(absl::StrCat("manifest places ", tensor.name(), " outside its allocation"));
    }
    const uint8_t* bytes = bases[tensor.allocation()] + tensor.offset();
    WEIGHTD_RETURN_IF_ERROR(writer->Append(std::string_view(reinterpret_cast<const char*>(bytes), tensor.size())));
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
