#include "client/cpp/client.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "client/cpp/channel.h"
#include "grpcpp/client_context.h"

namespace weightd::client {

namespace {

v1::LoadModelRequest BaseSpec(const std::string& model_id, v1::Scheme scheme, uint32_t tp_size) {
  v1::LoadModelRequest spec;
  spec.set_model_id(model_id);
  spec.mutable_quantization()->set_scheme(scheme);
  spec.mutable_placement()->set_tp_size(tp_size);
  return spec;
}

}  // namespace

v1::LoadModelRequest PathSpec(const std::string& model_id, const std::string& path, v1::Scheme scheme,
                              uint32_t tp_size) {
  v1::LoadModelRequest spec = BaseSpec(model_id, scheme, tp_size);
  spec.mutable_source()->mutable_path()->set_path(path);
  return spec;
}

v1::LoadModelRequest PeerSpec(const std::string& model_id, const std::string& peer_address, v1::Scheme scheme,
                              uint32_t tp_size) {
  v1::LoadModelRequest spec = BaseSpec(model_id, scheme, tp_size);
  spec.mutable_source()->mutable_peer()->set_address(peer_address);
  return spec;
}

Client::Client(ClientOptions options) : options_(std::move(options)) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeChannel(options_.address, options_.tls);
  channel_status_ = channel.status();
  if (channel.ok()) stub_ = v1::Loader::NewStub(*channel);
}

absl::StatusOr<v1::Manifest> Client::Load(const v1::LoadModelRequest& spec, const ProgressCallback& progress) {
  WEIGHTD_RETURN_IF_ERROR(channel_status_);
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<v1::LoadEvent>> reader = stub_->LoadModel(&context, spec);
  v1::LoadEvent event;
  v1::Manifest manifest;
  bool ready = false;
  while (reader->Read(&event)) {
    if (progress) progress(event);
    if (event.has_manifest()) {
      manifest = std::move(*event.mutable_manifest());
      ready = true;
    }
  }
  WEIGHTD_RETURN_IF_ERROR(FromGrpc(reader->Finish()));
  if (!ready) {
    return absl::DataLossError(absl::StrCat("load of ", spec.model_id(), " ended without a manifest"));
  }
  return manifest;
}

absl::StatusOr<v1::Manifest> Client::Manifest(const std::string& model_id) {
  WEIGHTD_RETURN_IF_ERROR(channel_status_);
  v1::GetManifestRequest request;
  request.set_model_id(model_id);
  v1::Manifest manifest;
  grpc::ClientContext context;
  WEIGHTD_RETURN_IF_ERROR(FromGrpc(stub_->GetManifest(&context, request, &manifest)));
  return manifest;
}

absl::StatusOr<Mapping> Client::Attach(const std::string& model_id, uint32_t rank) {
  WEIGHTD_ASSIGN_OR_RETURN(Lease lease, Lease::Attach(options_.handle_socket, model_id, rank, options_.attach_timeout));
  return Mapping::Map(std::move(lease));
}

absl::StatusOr<uint64_t> Client::Unload(const std::string& model_id, bool force) {
  WEIGHTD_RETURN_IF_ERROR(channel_status_);
  v1::UnloadModelRequest request;
  request.set_model_id(model_id);
  request.set_force(force);
  v1::UnloadModelResponse response;
  grpc::ClientContext context;
  WEIGHTD_RETURN_IF_ERROR(FromGrpc(stub_->UnloadModel(&context, request, &response)));
  return response.freed_bytes();
}

absl::StatusOr<std::vector<v1::ModelInfo>> Client::List() {
  WEIGHTD_RETURN_IF_ERROR(channel_status_);
  v1::ListModelsResponse response;
  grpc::ClientContext context;
  WEIGHTD_RETURN_IF_ERROR(FromGrpc(stub_->ListModels(&context, {}, &response)));
  return std::vector<v1::ModelInfo>(response.models().begin(), response.models().end());
}

absl::StatusOr<v1::StatusResponse> Client::Status() {
  WEIGHTD_RETURN_IF_ERROR(channel_status_);
  v1::StatusResponse response;
  grpc::ClientContext context;
  WEIGHTD_RETURN_IF_ERROR(FromGrpc(stub_->GetStatus(&context, {}, &response)));
  return response;
}

}  // namespace weightd::client
