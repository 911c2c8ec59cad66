#include "services/registry/registry.h"

#include <fcntl.h>
#include <google/protobuf/util/message_differencer.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "services/load/spec_validation.h"
#include "services/metrics/labels.h"

namespace weightd {
namespace {

constexpr auto kProgressInterval = std::chrono::milliseconds(100);

uint64_t ResidentBytes(const ResidentModel& m) {
  uint64_t total = 0;
  for (const auto& a : m.arenas) total += a->reserved_bytes();
  return total;
}

}  // namespace

Registry::Registry(DeviceBackend& backend, DeviceAccounting& accounting, RegistryLimits limits)
    : backend_(backend), accounting_(accounting), limits_(limits) {}

Registry::~Registry() { Shutdown(); }

void Registry::set_outcome_observer(std::function<void(const LoadOutcome&)> observer) {
  std::lock_guard<std::mutex> lock(mu_);
  outcome_observer_ = std::move(observer);
}

void Registry::set_unloaded_observer(std::function<void(const std::string&)> observer) {
  std::lock_guard<std::mutex> lock(mu_);
  unloaded_observer_ = std::move(observer);
}

void Registry::Report(const LoadOutcome& o) {
  uint64_t resident = 0;
  for (const auto& [device, bytes] : o.resident_bytes) resident += bytes;
  LogEvent(o.status.ok() ? LogLevel::kInfo : LogLevel::kWarning, "load_finished",
           {{"model", o.model_id}, {"source", o.source}, {"scheme", o.scheme}, {"result", o.result},
            {"code", ResultLabel(o.status)}, {"seconds", o.seconds}, {"bytes", o.source_bytes},
            {"quantized_bytes", o.quantized_bytes}, {"resident_bytes", resident},
            {"error", std::string(o.status.message())}});
  std::function<void(const LoadOutcome&)> observer;
  {
    std::lock_guard<std::mutex> lock(mu_);
    observer = outcome_observer_;
  }
  if (observer) observer(o);
}

void Registry::ReportRefused(const v1::LoadModelRequest& spec, const absl::Status& status) {
  LoadOutcome o;
  o.model_id = spec.model_id();
  o.source = SourceLabel(spec.source());
  o.scheme = SchemeLabel(spec.quantization().scheme());
  o.result = "refused";
  o.status = status;
  Report(o);
}

void Registry::TransitionLocked(const std::string& model_id, Entry& entry, v1::ModelState to) {
  LogEvent(LogLevel::kInfo, "model_state",
           {{"model", model_id}, {"from", v1::ModelState_Name(entry.state)},
            {"to", v1::ModelState_Name(to)}});
  entry.state = to;
}

absl::Status Registry::LoadOrAttach(const v1::LoadModelRequest& request,
                                    std::shared_ptr<LoadWatcher> watcher,
                                    const std::function<void(std::shared_ptr<LoadJob>)>& start) {
  // Equivalent specs (defaults left out or spelled out) attach to each other.
  const v1::LoadModelRequest spec = NormalizeSpec(request);
  const std::string& id = spec.model_id();
  std::shared_ptr<LoadJob> job;
  bool started = false;
  absl::StatusOr<v1::Manifest> ready = absl::UnknownError("");
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shutting_down_) return absl::UnavailableError("weightd is shutting down");
    auto it = models_.find(id);
    if (it != models_.end() && it->second.state != v1::MODEL_STATE_FAILED) {
      Entry& e = it->second;
      if (!google::protobuf::util::MessageDifferencer::Equals(e.spec, spec)) {
        return absl::AlreadyExistsError(absl::StrCat(
            "model '", id, "' is ", v1::ModelState_Name(e.state),
            " with a different spec; unload it first or use another model id"));
      }
      if (e.state == v1::MODEL_STATE_UNLOADING) {
        return absl::FailedPreconditionError(absl::StrCat("model '", id, "' is unloading"));
      }
      if (e.state == v1::MODEL_STATE_READY) {
        ready = e.resident.manifest;
      } else {
        e.watchers.push_back(watcher);
        job = e.job;
      }
    } else {
      // New, or a failed load tried again (with this spec).
      if (limits_.max_concurrent_loads > 0) {
        size_t loading = 0;
        for (const auto& [other, entry] : models_) loading += entry.state == v1::MODEL_STATE_LOADING;
        if (loading >= limits_.max_concurrent_loads) {
          return absl::ResourceExhaustedError(absl::StrCat(
              "model '", id, "': ", loading, " loads are in progress, the limit (--max-concurrent-loads) is ",
              limits_.max_concurrent_loads, "; retry when one finishes"));
        }
      }
      Entry& e = models_[id];
      e = Entry{};
      e.spec = spec;
      e.instance = next_instance_++;
      LogEvent(LogLevel::kInfo, "model_state", {{"model", id}, {"from", "NONE"}, {"to", "MODEL_STATE_LOADING"}});
      e.watchers.push_back(watcher);
      job = std::make_shared<LoadJob>(
          id, spec, backend_, accounting_,
          [this, id](const LoadJob* finished, absl::StatusOr<ResidentModel> result) {
            OnLoadFinished(id, finished, std::move(result));
          });
      job->set_max_source_bytes(limits_.max_source_bytes);
      if (spec.source().has_push()) {
        // Before the job is visible to push streams.
        const auto& push = spec.source().push();
        job->ExpectShards({push.shard_files().begin(), push.shard_files().end()}, push.config_json());
      }
      e.job = job;
      started = true;
      // Nothing received yet: bytes and seconds are 0 by definition.
      LogEvent(LogLevel::kInfo, "load_started",
               {{"model", id}, {"source", SourceLabel(spec.source())},
                {"scheme", SchemeLabel(spec.quantization().scheme())}, {"result", "ok"}, {"seconds", 0.0},
                {"bytes", 0}});
    }
  }
  if (job) {
    watcher->OnProgress(job->progress().Snapshot());  // "accepted": pushes may start
    if (started) start(job);
    return absl::OkStatus();
  }
  watcher->OnFinished(ready);
  return absl::OkStatus();
}

void Registry::OnLoadFinished(const std::string& model_id, const LoadJob* job,
                              absl::StatusOr<ResidentModel> result) {
  std::vector<std::shared_ptr<LoadWatcher>> watchers;
  absl::StatusOr<v1::Manifest> manifest = absl::UnknownError("load ended without a result");
  LoadOutcome outcome;
  std::shared_ptr<LoadJob> finished_job;
  // Built outside the lock (the description holds every shard's header).
  std::shared_ptr<ServableModel> servable;
  if (result.ok() && result->layout) {
    servable = ServableModel::Create(model_id, job->spec(), result->layout, result->arenas, backend_, true);
  }
  std::shared_ptr<ServableModel> ended;  // a relay of a failed load, cancelled outside the lock
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = models_.find(model_id);
    // A load that was unloaded (and perhaps started again) reports into nothing.
    if (it == models_.end() || it->second.job.get() != job) return;
    Entry& e = it->second;
    finished_job = std::move(e.job);  // released outside the lock
    outcome.model_id = model_id;
    outcome.source = SourceLabel(e.spec.source());
    outcome.scheme = SchemeLabel(e.spec.quantization().scheme());
    outcome.seconds = finished_job->progress().seconds();
    if (result.ok()) {
      e.resident = std::move(*result);
      manifest = e.resident.manifest;
      outcome.result = "ok";
      outcome.source_bytes = e.resident.manifest.source_bytes();
      outcome.quantized_bytes = finished_job->progress().quantized_bytes();
      // The reservations in the accounting: the arenas are what the model holds; its load
      // held them plus the backend's staging ring of the device (0 on the host backend).
      for (const auto& a : e.resident.arenas) outcome.resident_bytes[a->device()] += a->reserved_bytes();
      for (const auto& [device, bytes] : outcome.resident_bytes) {
        outcome.device_peak_bytes[device] = bytes + backend_.reserved_bytes(device);
      }
      TransitionLocked(model_id, e, v1::MODEL_STATE_READY);
      if (!e.servable) e.servable = std::move(servable);
    } else {
      e.error = result.status();
      ended = std::move(e.servable);
      manifest = result.status();
      outcome.result = "error";
      outcome.status = result.status();
      TransitionLocked(model_id, e, v1::MODEL_STATE_FAILED);
    }
    watchers.swap(e.watchers);
  }
  if (ended) ended->Cancel(result.status());
  Report(outcome);
  for (auto& w : watchers) w->OnFinished(manifest);
}

absl::StatusOr<std::shared_ptr<ServableModel>> Registry::Servable(const std::string& model_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = models_.find(model_id);
  if (it == models_.end()) return absl::NotFoundError(absl::StrCat("no model '", model_id, "' here"));
  const Entry& e = it->second;
  if (e.servable) return e.servable;
  if (e.state == v1::MODEL_STATE_LOADING && (e.spec.source().has_peer() || e.spec.prefer_peers())) {
    return absl::UnavailableError(absl::StrCat("model '", model_id, "' is being planned from a peer here"));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "model '", model_id, "' is ", v1::ModelState_Name(e.state),
      e.state == v1::MODEL_STATE_LOADING ? " from its files or a push; it serves peers once READY" : ""));
}

void Registry::SetRelay(const std::string& model_id, const LoadJob* job, std::shared_ptr<ServableModel> servable) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = models_.find(model_id);
  if (it == models_.end() || it->second.job.get() != job) return;
  it->second.servable = std::move(servable);
}

v1::FindPeerModelResponse Registry::FindForPeer(const v1::FindPeerModelRequest& request) {
  v1::FindPeerModelResponse response;
  std::shared_ptr<ServableModel> servable;
  v1::ModelState state;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = models_.find(request.model_id());
    if (it == models_.end() || !it->second.servable) return response;
    servable = it->second.servable;
    state = it->second.state;
  }
  const v1::LoadModelRequest asked = NormalizeSpec([&] {
    v1::LoadModelRequest r;
    *r.mutable_quantization() = request.quantization();
    return r;
  }());
  const v1::Quantization& q = servable->quantization();
  if (servable->source_digest() != request.source_digest() || !servable->Describe().ok() ||
      !google::protobuf::util::MessageDifferencer::Equals(q, asked.quantization())) {
    return response;
  }
  response.set_found(true);
  response.set_state(state);
  response.set_serving_streams(servable->streams());
  return response;
}

void Registry::Unwatch(const std::string& model_id, const LoadWatcher* watcher) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = models_.find(model_id);
  if (it == models_.end()) return;
  auto& ws = it->second.watchers;
  for (auto w = ws.begin(); w != ws.end(); ++w) {
    if (w->get() == watcher) {
      ws.erase(w);
      return;
    }
  }
}

absl::StatusOr<std::shared_ptr<LoadJob>> Registry::LoadingJob(const std::string& model_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = models_.find(model_id);
  if (it == models_.end()) {
    return absl::NotFoundError(absl::StrCat("no load of model '", model_id,
                                            "' is waiting for shards; call LoadModel with a push source first"));
  }
  if (it->second.state != v1::MODEL_STATE_LOADING) {
    return absl::FailedPreconditionError(absl::StrCat("model '", model_id, "' is ",
                                                      v1::ModelState_Name(it->second.state),
                                                      ", not loading"));
  }
  return it->second.job;
}

void Registry::MaybeReportProgress(const std::string& model_id) {
  std::vector<std::shared_ptr<LoadWatcher>> watchers;
  v1::LoadEvent event;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = models_.find(model_id);
    if (it == models_.end() || !it->second.job) return;
    auto now = std::chrono::steady_clock::now();
    if (now - it->second.last_progress < kProgressInterval) return;
    it->second.last_progress = now;
    watchers = it->second.watchers;
    event = it->second.job->progress().Snapshot();
  }
  for (auto& w : watchers) w->OnProgress(event);
}

absl::StatusOr<v1::Manifest> Registry::GetManifest(const std::string& model_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = models_.find(model_id);
  if (it == models_.end()) return absl::NotFoundError(absl::StrCat("no model '", model_id, "'"));
  const Entry& e = it->second;
  if (e.state != v1::MODEL_STATE_READY) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model '", model_id, "' is ", v1::ModelState_Name(e.state),
        e.state == v1::MODEL_STATE_FAILED ? absl::StrCat(": ", e.error.message()) : ""));
  }
  return e.resident.manifest;
}

v1::ModelInfo Registry::InfoLocked(const std::string& model_id, const Entry& e) const {
  v1::ModelInfo info;
  info.set_model_id(model_id);
  info.set_state(e.state);
  info.set_leases(e.leases);
  info.set_scheme(e.spec.quantization().scheme());
  if (e.state == v1::MODEL_STATE_READY) {
    info.set_resident_bytes(ResidentBytes(e.resident));
    info.set_source_bytes(e.resident.manifest.source_bytes());
  }
  if (e.state == v1::MODEL_STATE_FAILED) {
    info.set_error(absl::StrCat(absl::StatusCodeToString(e.error.code()), ": ", e.error.message()));
  }
  return info;
}

std::vector<v1::ModelInfo> Registry::List() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<v1::ModelInfo> out;
  for (const auto& [id, e] : models_) out.push_back(InfoLocked(id, e));
  return out;
}

absl::StatusOr<uint64_t> Registry::Unload(const std::string& model_id, bool force) {
  std::shared_ptr<LoadJob> job;
  ResidentModel resident;
  std::vector<std::shared_ptr<LoadWatcher>> watchers;
  uint64_t freed = 0;
  std::shared_ptr<ServableModel> servable;
  LoadOutcome aborted_load;
  bool was_ready = false;
  std::function<void(const std::string&)> unloaded;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = models_.find(model_id);
    if (it == models_.end()) return absl::NotFoundError(absl::StrCat("no model '", model_id, "'"));
    Entry& e = it->second;
    if (e.leases > 0 && !force) {
      return absl::FailedPreconditionError(absl::StrCat("model '", model_id, "' has ", e.leases,
                                                        " active lease(s); close them or force"));
    }
    if (e.state == v1::MODEL_STATE_LOADING && !force) {
      return absl::FailedPreconditionError(
          absl::StrCat("model '", model_id, "' is still loading; force to abort the load"));
    }
    was_ready = e.state == v1::MODEL_STATE_READY;
    unloaded = unloaded_observer_;
    if (e.job) {
      aborted_load.model_id = model_id;
      aborted_load.source = SourceLabel(e.spec.source());
      aborted_load.scheme = SchemeLabel(e.spec.quantization().scheme());
      aborted_load.result = "aborted";
      aborted_load.seconds = e.job->progress().seconds();
    }
    TransitionLocked(model_id, e, v1::MODEL_STATE_UNLOADING);
    freed = ResidentBytes(e.resident);
    job = std::move(e.job);
    resident = std::move(e.resident);
    servable = std::move(e.servable);
    watchers.swap(e.watchers);
    // Leases stay (forced unload): each keeps its rank's arena until the worker lets go.
    models_.erase(it);
    LogEvent(LogLevel::kInfo, "model_state", {{"model", model_id}, {"from", "MODEL_STATE_UNLOADING"}, {"to", "NONE"}});
  }
  // Memory goes here, outside the lock, when the last holder drops it.
  absl::Status aborted = absl::AbortedError(absl::StrCat("model '", model_id, "' was unloaded during its load"));
  // Serving streams end with a clear status; reads in flight finish first.
  if (servable) {
    servable->Cancel(absl::AbortedError(absl::StrCat("model '", model_id, "' was unloaded on the serving peer")));
  }
  if (job) job->Fail(aborted);
  for (auto& w : watchers) w->OnFinished(aborted);
  resident = ResidentModel{};  // released before observers hear of it
  if (job) {
    aborted_load.status = aborted;
    Report(aborted_load);
  }
  if (was_ready && unloaded) unloaded(model_id);
  return freed;
}

absl::StatusOr<LeaseGrant> Registry::AcquireLease(const std::string& model_id, uint32_t rank) {
  std::lock_guard<std::mutex> lock(mu_);
  if (shutting_down_) return absl::UnavailableError("weightd is shutting down");
  auto it = models_.find(model_id);
  if (it == models_.end()) return absl::NotFoundError(absl::StrCat("no model '", model_id, "'"));
  Entry& e = it->second;
  if (e.state != v1::MODEL_STATE_READY) {
    return absl::FailedPreconditionError(
        absl::StrCat("model '", model_id, "' is ", v1::ModelState_Name(e.state), ", not ready"));
  }
  if (rank >= static_cast<uint32_t>(e.resident.manifest.ranks_size())) {
    return absl::InvalidArgumentError(absl::StrCat("model '", model_id, "' has ",
                                                   e.resident.manifest.ranks_size(), " rank(s), no rank ", rank));
  }
  LeaseGrant grant;
  grant.lease_id = next_lease_id_++;
  grant.manifest = e.resident.manifest.ranks(static_cast<int>(rank));
  // A legacy IPC handle opens the memory with no lease to keep it: it goes out
  // in the lease's manifest only, never in GetManifest or LoadModel's.
  const std::string ipc = e.resident.arenas[rank]->allocation().ipc_handle();
  if (!ipc.empty()) grant.manifest.mutable_allocations(0)->set_cuda_ipc_handle(ipc);
  // Only descriptor-backed allocations travel as fds (legacy IPC handles are in the manifest).
  int fd = e.resident.arenas[rank]->allocation().export_fd(e.spec.placement().writable());
  if (fd >= 0) {
    UniqueFd dup(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
    if (!dup.valid()) {
      return absl::ResourceExhaustedError(absl::StrCat("model '", model_id, "': cannot duplicate its memory handle: ",
                                                       std::strerror(errno)));
    }
    grant.fds.push_back(std::move(dup));
  }
  ++e.leases;
  leases_[grant.lease_id] = Lease{model_id, e.instance, rank, e.resident.arenas[rank]};
  return grant;
}

void Registry::ReleaseLease(uint64_t lease_id) {
  std::shared_ptr<Arena> arena;  // freed outside the lock, if the model was force-unloaded
  std::lock_guard<std::mutex> lock(mu_);
  auto l = leases_.find(lease_id);
  if (l == leases_.end()) return;
  auto it = models_.find(l->second.model_id);
  if (it != models_.end() && it->second.instance == l->second.instance && it->second.leases > 0) {
    --it->second.leases;
  }
  arena = std::move(l->second.arena);
  leases_.erase(l);
}

size_t Registry::active_leases() const {
  std::lock_guard<std::mutex> lock(mu_);
  return leases_.size();
}

void Registry::Shutdown() {
  std::vector<std::shared_ptr<LoadJob>> jobs;
  std::map<std::string, Entry> models;
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutting_down_ = true;
    for (auto& [id, e] : models_) {
      if (e.job) jobs.push_back(e.job);
    }
  }
  for (auto& job : jobs) job->Fail(absl::UnavailableError("weightd is shutting down"));
  {
    std::lock_guard<std::mutex> lock(mu_);
    models.swap(models_);
    leases_.clear();
  }
  for (auto& [id, e] : models) {
    if (e.servable) e.servable->Cancel(absl::UnavailableError("the serving weightd is shutting down"));
  }
}

}  // namespace weightd
