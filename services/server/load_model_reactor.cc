#include "services/server/load_model_reactor.h"

#include "services/server/grpc_status.h"
#include "services/server/reactor_order.h"

namespace weightd {

// Outlives the reactor (the registry may hold it a little longer); forwards
// calls only while the reactor exists.
class LoadModelReactor::Bridge : public LoadWatcher {
 public:
  explicit Bridge(LoadModelReactor* reactor) : reactor_(reactor) {}
  void Detach() {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    reactor_ = nullptr;
  }
  void OnProgress(const v1::LoadEvent& event) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    if (reactor_ != nullptr) reactor_->Progress(event);
  }
  void OnFinished(const absl::StatusOr<v1::Manifest>& manifest) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    if (reactor_ != nullptr) reactor_->Finished(manifest);
  }

 private:
  // Recursive: should gRPC run OnDone inline under a call made from here, Detach re-enters.
  std::recursive_mutex mu_;
  LoadModelReactor* reactor_;
};

std::shared_ptr<LoadWatcher> LoadModelReactor::watcher() { return bridge_; }

LoadModelReactor::LoadModelReactor(Registry& registry, std::string model_id)
    : registry_(registry), model_id_(std::move(model_id)), bridge_(std::make_shared<Bridge>(this)) {}

void LoadModelReactor::Act(Action action) {
  switch (action) {
    case Action::kNone:
      return;
    case Action::kWrite:
      reactor_order::Release(this);
      StartWrite(&in_flight_);
      return;
    case Action::kWriteAndFinish:
      reactor_order::Release(this);
      StartWriteAndFinish(&in_flight_, grpc::WriteOptions(), grpc::Status::OK);
      return;
    case Action::kFinish: {
      grpc::Status status = finish_status_;  // copied before the release: OnDone frees the member
      reactor_order::Release(this);
      Finish(std::move(status));
      return;
    }
  }
}

void LoadModelReactor::Reject(const absl::Status& status) {
  Action action;
  {
    std::lock_guard<std::mutex> lock(mu_);
    action = FinishLocked(ToGrpcStatus(status));
  }
  Act(action);
}

void LoadModelReactor::Progress(const v1::LoadEvent& event) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (final_.has_value() || finish_called_ || cancelled_) return;
    if (writing_) {
      pending_ = event;
      return;
    }
    in_flight_ = event;
    writing_ = true;
  }
  Act(Action::kWrite);
}

void LoadModelReactor::Finished(const absl::StatusOr<v1::Manifest>& manifest) {
  Action action = Action::kNone;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (final_.has_value()) return;
    final_ = manifest;
    pending_.reset();
    if (cancelled_) {
      if (!writing_) action = FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "LoadModel cancelled"));
    } else if (!writing_) {
      action = FinalLocked();
    }
  }
  Act(action);
}

LoadModelReactor::Action LoadModelReactor::FinalLocked() {
  if (finish_called_) return Action::kNone;
  if (!final_->ok()) return FinishLocked(ToGrpcStatus(final_->status()));
  in_flight_.Clear();
  in_flight_.set_phase(v1::PHASE_READY);
  in_flight_.set_bytes_done((*final_)->source_bytes());
  in_flight_.set_bytes_total((*final_)->source_bytes());
  uint32_t tensors = 0;
  for (const auto& r : (*final_)->ranks()) tensors += static_cast<uint32_t>(r.tensors_size());
  in_flight_.set_tensors_done(tensors);
  in_flight_.set_tensors_total(tensors);
  *in_flight_.mutable_manifest() = **final_;
  writing_ = true;
  finish_called_ = true;
  return Action::kWriteAndFinish;
}

LoadModelReactor::Action LoadModelReactor::FinishLocked(const grpc::Status& status) {
  if (finish_called_) return Action::kNone;
  finish_called_ = true;
  finish_status_ = status;
  return Action::kFinish;
}

void LoadModelReactor::OnWriteDone(bool ok) {
  reactor_order::Reaction reaction(this);
  Action action = Action::kNone;
  {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    if (!ok || cancelled_) {
      action = FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
    } else if (final_.has_value()) {
      action = FinalLocked();
    } else if (pending_.has_value()) {
      in_flight_ = std::move(*pending_);
      pending_.reset();
      writing_ = true;
      action = Action::kWrite;
    }
  }
  Act(action);
}

void LoadModelReactor::OnCancel() {
  reactor_order::Reaction reaction(this);
  Action action = Action::kNone;
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    // A write decided under the lock may not have been started yet: Finish now
    // could come before that StartWrite. Its OnWriteDone (false, the call being
    // cancelled) finishes instead.
    if (!writing_) {
      action = FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "LoadModel cancelled; the load goes on"));
    }
  }
  Act(action);
}

void LoadModelReactor::OnDone() {
  reactor_order::Acquire(this);
  bridge_->Detach();
  registry_.Unwatch(model_id_, bridge_.get());
  delete this;
}

}  // namespace weightd
