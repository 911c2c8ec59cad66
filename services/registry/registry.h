// The registry owns every model's state and is the only place it changes:
//
//   (none) -> LOADING -> READY -> UNLOADING -> (gone)
//                     \-> FAILED -> (gone, or LOADING again on a new LoadModel)
//
// Every transition is logged. LoadModel is idempotent: the same spec attaches to
// the load in progress or the resident model; a different spec under a resident
// or loading id is ALREADY_EXISTS. Leases (handle-socket connections) pin a
// model against unload unless forced. Thread-safe.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/unique_fd.h"
#include "services/device/accounting.h"
#include "services/device/device_backend.h"
#include "services/load/load_job.h"
#include "services/peer/servable_model.h"
#include "services/registry/load_watcher.h"
#include "weightd/v1/loader.pb.h"

namespace weightd {

struct LeaseGrant {
  uint64_t lease_id = 0;
  v1::RankManifest manifest;
  // Duplicated under the registry's lock: they stay valid (and keep the memory
  // mapped in this process) even if a forced unload frees the model before they are sent.
  std::vector<UniqueFd> fds;
};

// The outcome of every LoadModel that started a load or was turned away, for
// metrics and logs; observers are called outside the registry's lock. `result`:
// "ok"; "error" (the load failed); "refused" (turned away before it started: bad
// spec, path outside the root, ALREADY_EXISTS, shutting down); "aborted" (a forced
// unload). A call that attaches to an existing load or model is no new outcome.
struct LoadOutcome {
  std::string model_id;
  std::string source;  // services/metrics/labels.h
  std::string scheme;
  std::string result;
  absl::Status status;
  double seconds = 0;
  uint64_t source_bytes = 0;
  uint64_t quantized_bytes = 0;                // source bytes of quantized tensors; ok only
  std::map<int, uint64_t> resident_bytes;      // by device; ok only
  std::map<int, uint64_t> device_peak_bytes;   // by device: the most the load held; ok only
};

struct RegistryLimits {
  uint64_t max_source_bytes = 0;   // of one load, from its headers; 0: none
  size_t max_concurrent_loads = 0;  // models LOADING at once; 0: none
};

class Registry {
 public:
  Registry(DeviceBackend& backend, DeviceAccounting& accounting, RegistryLimits limits = {});
  ~Registry();

  void set_outcome_observer(std::function<void(const LoadOutcome&)> observer);
  // Called (outside the lock) when a READY model is unloaded and its memory released.
  void set_unloaded_observer(std::function<void(const std::string& model_id)> observer);
  // A LoadModel turned away before the registry saw it (validation, source lookup):
  // logged and counted like every other outcome.
  void ReportRefused(const v1::LoadModelRequest& spec, const absl::Status& status);

  // Starts a load or attaches `watcher` to the existing one. A new load beyond
  // max_concurrent_loads is RESOURCE_EXHAUSTED (attaching never is). When a new load starts,
  // `start` is called (outside the lock) with its job so the source can drive it.
  // Specs are compared and stored after NormalizeSpec (services/load/spec_validation.h).
  absl::Status LoadOrAttach(const v1::LoadModelRequest& spec, std::shared_ptr<LoadWatcher> watcher,
                            const std::function<void(std::shared_ptr<LoadJob>)>& start);
  // Removes a watcher whose call ended early (the load goes on).
  void Unwatch(const std::string& model_id, const LoadWatcher* watcher);

  // The job of a model in LOADING, for push streams; NOT_FOUND / FAILED_PRECONDITION otherwise.
  absl::StatusOr<std::shared_ptr<LoadJob>> LoadingJob(const std::string& model_id);
  // Sends progress to the model's watchers if 100 ms have passed since the last.
  void MaybeReportProgress(const std::string& model_id);

  absl::StatusOr<v1::Manifest> GetManifest(const std::string& model_id);
  std::vector<v1::ModelInfo> List();
  absl::StatusOr<uint64_t> Unload(const std::string& model_id, bool force);

  absl::StatusOr<LeaseGrant> AcquireLease(const std::string& model_id, uint32_t rank);
  void ReleaseLease(uint64_t lease_id);
  size_t active_leases() const;

  // The model as peers are served it: a READY model, or one still arriving from
  // a peer (relay). NOT_FOUND, or FAILED_PRECONDITION for a model loading from
  // its files or a push (served once READY) or FAILED; UNAVAILABLE for a model
  // whose peer load has not planned yet (it relays once it has).
  absl::StatusOr<std::shared_ptr<ServableModel>> Servable(const std::string& model_id);
  // A peer load of `job` has planned: it serves what has landed from now on.
  void SetRelay(const std::string& model_id, const LoadJob* job, std::shared_ptr<ServableModel> servable);
  // Whether this daemon holds (or is receiving) `model_id` from the same
  // checkpoint (source digest) under the same quantization.
  v1::FindPeerModelResponse FindForPeer(const v1::FindPeerModelRequest& request);

  // Fails every load in progress with UNAVAILABLE and frees every model.
  void Shutdown();

 private:
  struct Entry {
    v1::LoadModelRequest spec;
    v1::ModelState state = v1::MODEL_STATE_LOADING;
    std::shared_ptr<LoadJob> job;  // while LOADING
    ResidentModel resident;        // while READY
    std::shared_ptr<ServableModel> servable;  // READY, or LOADING from a peer once planned
    absl::Status error;            // while FAILED
    uint32_t leases = 0;
    // Which load of the id this is: a lease counts against the instance it was
    // granted on, not a later one under the same id (after a forced unload).
    uint64_t instance = 0;
    std::vector<std::shared_ptr<LoadWatcher>> watchers;
    std::chrono::steady_clock::time_point last_progress;
  };

  void OnLoadFinished(const std::string& model_id, const LoadJob* job,
                      absl::StatusOr<ResidentModel> result);
  void TransitionLocked(const std::string& model_id, Entry& entry, v1::ModelState to);
  v1::ModelInfo InfoLocked(const std::string& model_id, const Entry& entry) const;

  DeviceBackend& backend_;
  DeviceAccounting& accounting_;
  const RegistryLimits limits_;
  void Report(const LoadOutcome& outcome);

  std::function<void(const LoadOutcome&)> outcome_observer_;
  std::function<void(const std::string&)> unloaded_observer_;

  mutable std::mutex mu_;
  bool shutting_down_ = false;
  std::map<std::string, Entry> models_;
  struct Lease {
    std::string model_id;
    uint64_t instance = 0;  // Entry::instance it was granted on
    uint32_t rank;
    // The rank's memory: a forced unload drops the model, but a worker's lease keeps
    // its arena (and the arena's reservation in the accounting) until the lease ends,
    // because the worker's mapping keeps the device memory in use until then.
    std::shared_ptr<Arena> arena;
  };
  std::map<uint64_t, Lease> leases_;
  uint64_t next_lease_id_ = 1;
  uint64_t next_instance_ = 1;
};

}  // namespace weightd
