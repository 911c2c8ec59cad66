// Streams one LoadModel call: progress events as the registry reports them (at
// most one write in flight; a newer event replaces an unsent one), then the final
// event with the manifest, or the load's error as the call's status.
// Thread-safe: the registry calls in from loader threads.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <mutex>
#include <optional>

#include "services/registry/load_watcher.h"
#include "services/registry/registry.h"
#include "weightd/v1/loader.pb.h"

namespace weightd {

class LoadModelReactor : public grpc::ServerWriteReactor<v1::LoadEvent> {
 public:
  LoadModelReactor(Registry& registry, std::string model_id);
  // The watcher to register with the registry; it outlives this reactor safely.
  std::shared_ptr<LoadWatcher> watcher();
  // Ends the call with an error before any watcher was registered.
  void Reject(const absl::Status& status);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  class Bridge;
  // Decided under mu_, carried out after releasing it: gRPC may run a reaction
  // on the calling thread, and nothing may touch `this` after a Finish.
  enum class Action { kNone, kWrite, kWriteAndFinish, kFinish };
  void Progress(const v1::LoadEvent& event);
  void Finished(const absl::StatusOr<v1::Manifest>& manifest);
  Action FinalLocked();
  Action FinishLocked(const grpc::Status& status);
  void Act(Action action);

  Registry& registry_;
  std::string model_id_;
  std::shared_ptr<Bridge> bridge_;

  std::mutex mu_;
  bool writing_ = false;
  bool finish_called_ = false;
  bool cancelled_ = false;  // OnCancel ran: no new write starts; the one in flight finishes the call
  v1::LoadEvent in_flight_;
  std::optional<v1::LoadEvent> pending_;
  std::optional<absl::StatusOr<v1::Manifest>> final_;
  grpc::Status finish_status_;
};

}  // namespace weightd
