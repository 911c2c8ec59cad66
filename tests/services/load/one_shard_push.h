// Test helper: a push load of one shard, "a.safetensors", planned from its
// header, and that shard's writer: the setup ShardWriter's tests share. The
// load's outcome lands in `result`.
#pragma once

#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "services/device/accounting.h"
#include "services/device/device_backend.h"
#include "services/load/load_job.h"
#include "services/load/spec_validation.h"

namespace weightd {

class OneShardPush {
 public:
  explicit OneShardPush(DeviceBackend& backend, v1::Scheme scheme = v1::SCHEME_UNSPECIFIED)
      : accounting_({uint64_t{1} << 30}) {
    v1::LoadModelRequest request;
    request.set_model_id("m");
    request.mutable_source()->mutable_push()->add_shard_files("a.safetensors");
    request.mutable_quantization()->set_scheme(scheme);
    job_ = std::make_shared<LoadJob>("m", NormalizeSpec(request), backend, accounting_,
                                     [this](const LoadJob*, absl::StatusOr<ResidentModel> model) {
                                       result = model.status();
                                     });
    job_->ExpectShards({"a.safetensors"}, "{}");
  }
  OneShardPush(const OneShardPush&) = delete;
  OneShardPush& operator=(const OneShardPush&) = delete;

  // Plans the shard from its header JSON; its writer, or null (a test failure
  // recorded) where the header does not parse or plan.
  ShardWriter* Plan(const std::string& header_json) {
    auto header = safetensors::ParseShardHeaderJson("a.safetensors", header_json, {});
    if (!header.ok()) {
      ADD_FAILURE() << header.status();
      return nullptr;
    }
    absl::Status planned = absl::UnknownError("not resumed");
    job_->OnShardHeader("a.safetensors", *header, [&planned](absl::Status s) { planned = s; });
    if (!planned.ok()) {
      ADD_FAILURE() << planned;
      return nullptr;
    }
    return job_->Writer("a.safetensors");
  }
  // The stream of the shard ends with `status`.
  void Done(absl::Status status) { job_->OnShardDone("a.safetensors", status); }

  absl::Status result = absl::UnknownError("not finished");

 private:
  DeviceAccounting accounting_;
  std::shared_ptr<LoadJob> job_;
};

}  // namespace weightd
