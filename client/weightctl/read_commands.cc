// weightctl manifest / list / status / unload.
#include <cstdio>
#include <string>

#include "absl/strings/str_join.h"
#include "base/byte_size.h"
#include "client/cpp/client.h"
#include "client/weightctl/cli.h"
#include "google/protobuf/util/json_util.h"

namespace weightd::ctl {
namespace {

client::Client Daemon(const CliOptions& options) {
  return client::Client({.address = options.address, .tls = options.tls, .handle_socket = options.handle_socket});
}

void PrintJson(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions print;
  print.add_whitespace = true;
  print.preserve_proto_field_names = true;
  print.always_print_primitive_fields = true;  // zero counts too: scripts need every key
  (void)google::protobuf::util::MessageToJsonString(message, &json, print);
  std::printf("%s", json.c_str());
}

std::string StateName(v1::ModelState state) {
  std::string name = v1::ModelState_Name(state);
  return name.substr(std::string("MODEL_STATE_").size());
}

void PrintModels(const google::protobuf::RepeatedPtrField<v1::ModelInfo>& models) {
  std::printf("%-24s %-10s %12s %12s %6s\n", "MODEL", "STATE", "SOURCE", "RESIDENT", "LEASES");
  for (const v1::ModelInfo& model : models) {
    std::printf("%-24s %-10s %12s %12s %6u\n", model.model_id().c_str(), StateName(model.state()).c_str(),
                FormatByteSize(model.source_bytes()).c_str(), FormatByteSize(model.resident_bytes()).c_str(),
                model.leases());
    if (!model.error().empty()) std::printf("  error: %s\n", model.error().c_str());
  }
}

}  // namespace

int RunManifest(const CliOptions& options, const Args& args) {
  if (args.size() != 1) return Usage("weightctl manifest MODEL [--rank R] [--json]");
  auto fetched = Daemon(options).Manifest(args[0]);
  if (!fetched.ok()) return ReportError(fetched.status());
  v1::Manifest manifest = std::move(*fetched);
  if (options.rank >= 0) {
    v1::Manifest one = manifest;
    one.clear_ranks();
    for (const v1::RankManifest& rank : manifest.ranks()) {
      if (static_cast<int>(rank.rank()) == options.rank) *one.add_ranks() = rank;
    }
    if (one.ranks().empty()) {
      return ReportError(absl::NotFoundError(absl::StrCat("model ", args[0], " has no rank ", options.rank)));
    }
    manifest = std::move(one);
  }
  if (options.json) {
    PrintJson(manifest);
    return 0;
  }
  std::printf("model %s: %s, %s resident\n", manifest.model_id().c_str(), StateName(manifest.state()).c_str(),
              FormatByteSize(manifest.resident_bytes()).c_str());
  for (const v1::RankManifest& rank : manifest.ranks()) {
    std::printf("rank %u on device %u:\n", rank.rank(), rank.device());
    for (const v1::Allocation& allocation : rank.allocations()) {
      std::printf("  allocation %u: %s (%s)\n", allocation.id(), FormatByteSize(allocation.size()).c_str(),
                  v1::HandleType_Name(allocation.handle_type()).c_str());
    }
    for (const v1::TensorEntry& tensor : rank.tensors()) {
      std::printf("  %-56s %-8s [%s] @%u+%llu (%s)\n", tensor.name().c_str(), tensor.dtype().c_str(),
                  absl::StrJoin(tensor.shape(), ", ").c_str(), tensor.allocation(),
                  static_cast<unsigned long long>(tensor.offset()), FormatByteSize(tensor.size()).c_str());
    }
  }
  return 0;
}

int RunList(const CliOptions& options, const Args& args) {
  if (!args.empty()) return Usage("weightctl list [--json]");
  auto models = Daemon(options).List();
  if (!models.ok()) return ReportError(models.status());
  v1::ListModelsResponse response;
  for (v1::ModelInfo& model : *models) *response.add_models() = std::move(model);
  if (options.json) {
    PrintJson(response);
    return 0;
  }
  PrintModels(response.models());
  return 0;
}

int RunStatus(const CliOptions& options, const Args& args) {
  if (!args.empty()) return Usage("weightctl status [--json]");
  auto fetched = Daemon(options).Status();
  if (!fetched.ok()) return ReportError(fetched.status());
  const v1::StatusResponse& response = *fetched;
  if (options.json) {
    PrintJson(response);
    return 0;
  }
  std::printf("weightd %s\n%-8s %-6s %12s %12s %12s\n", response.version().c_str(), "DEVICE", "KIND", "USED", "PEAK",
              "CAPACITY");
  for (const v1::DeviceStatus& device : response.devices()) {
    std::printf("%-8u %-6s %12s %12s %12s\n", device.index(),
                device.kind() == v1::DEVICE_KIND_CUDA ? "cuda" : "host", FormatByteSize(device.used_bytes()).c_str(),
                FormatByteSize(device.peak_bytes()).c_str(), FormatByteSize(device.capacity_bytes()).c_str());
  }
  std::printf("\n");
  PrintModels(response.models());
  return 0;
}

int RunUnload(const CliOptions& options, const Args& args) {
  if (args.size() != 1) return Usage("weightctl unload MODEL [--force]");
  auto freed = Daemon(options).Unload(args[0], options.force);
  if (!freed.ok()) return ReportError(freed.status());
  std::printf("unloaded %s: freed %s\n", args[0].c_str(), FormatByteSize(*freed).c_str());
  return 0;
}

}  // namespace weightd::ctl
