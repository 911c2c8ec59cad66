// One load of one model: gathers every shard's header, plans, reserves and
// allocates the arenas, hands each shard stream its writer, and reports the
// resident model (or the first error) exactly once. Sources (path reader, push
// streams) drive it; the registry owns it and its outcome.
//
// Thread-safe: shard streams call in concurrently. Failure is sticky: after the
// first error every later call sees it, waiting streams resume with it, and the
// memory goes once the last writer drains.
//
// No lock is held across device work: device allocation, communicator creation,
// the final synchronization and the broadcast of replicated tensors run on the
// calling stream's thread outside mu_, with what they need taken under it, and
// their results published under it again. So Fail (a forced unload, shutdown,
// the stall watchdog), status() and finished() never wait for a device call: a
// load that fails while one is in flight reports at once, and the memory that
// call uses goes when it returns, on its thread (never, if it never returns:
// that memory stays reserved and counted, and is never handed to another load).
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "services/device/accounting.h"
#include "services/device/collective.h"
#include "services/device/device_backend.h"
#include "services/load/arena.h"
#include "services/load/planner.h"
#include "services/load/progress.h"
#include "services/load/shard_writer.h"
#include "services/load/tensor_placer.h"
#include "weightd/v1/loader.pb.h"

namespace weightd {

// The checkpoint a load planned from, and its plan: what a peer is served from.
struct LoadLayout {
  std::vector<ShardInput> shards;  // headers, as the source had them
  LoadPlan plan;
  std::string config_json;         // config.json as it came (without quantization_config)
};

// What a finished load leaves behind: the memory and its description.
struct ResidentModel {
  v1::Manifest manifest;
  std::vector<std::shared_ptr<Arena>> arenas;  // by rank
  std::shared_ptr<const LoadLayout> layout;
};

// Owned by a shared_ptr: a shard writer's placement in flight holds it.
class LoadJob : public std::enable_shared_from_this<LoadJob> {
 public:
  // Receives the job itself, so the owner can tell a stale load from a newer one.
  using DoneCallback = std::function<void(const LoadJob*, absl::StatusOr<ResidentModel>)>;

  LoadJob(std::string model_id, v1::LoadModelRequest spec, DeviceBackend& backend,
          DeviceAccounting& accounting, DoneCallback done);
  ~LoadJob();

  const std::string& model_id() const { return model_id_; }
  const v1::LoadModelRequest& spec() const { return spec_; }
  LoadProgress& progress() { return progress_; }

  // Before any header: a load whose headers describe more source bytes is
  // RESOURCE_EXHAUSTED before any memory is reserved. 0: no limit.
  void set_max_source_bytes(uint64_t bytes) { max_source_bytes_ = bytes; }

  // Set once by the source, before any header: the shard files in order, and config.json.
  void ExpectShards(std::vector<std::string> files, std::string config_json);
  bool ExpectsShard(const std::string& file) const;
  // Expected, and no stream has delivered its header yet.
  bool AwaitsHeader(const std::string& file) const;

  // A shard stream has parsed its header. `resume` runs exactly once: with OK when every
  // shard's header is in and the memory is allocated (the stream may then feed data
  // to Writer(file)), or with the load's error.
  void OnShardHeader(const std::string& file, safetensors::ShardHeader header,
                     std::function<void(absl::Status)> resume);
  // Once planned (null before, or after a failure where noted): the plan and
  // headers; the placer and arenas (null / empty once failed or finished). A
  // source that places bytes itself (a peer) uses them, then reports each shard done.
  std::shared_ptr<const LoadLayout> layout() const;
  std::shared_ptr<TensorPlacer> placer() const;
  std::vector<std::shared_ptr<Arena>> arenas() const;
  DeviceBackend& backend() { return backend_; }
  // Only after resume(OK). The caller must call OnShardDone(file, ...) when its stream ends.
  ShardWriter* Writer(const std::string& file);
  // Whether tensor `index` of shard `file` is written as its bytes arrive, in
  // any order (stored unchanged, its rank slices byte ranges of the source);
  // false before planning, or for an unknown shard.
  bool StreamsTensor(const std::string& file, size_t index) const;
  // The stream of `file` has ended (OK when the parser finished cleanly); its writer is dropped.
  void OnShardDone(const std::string& file, const absl::Status& status);

  // Changes whenever a shard's header arrives or a shard ends; with progress().bytes_done()
  // it tells a stalled load from a slow one (services/load/stall_watchdog.h).
  uint64_t activity() const { return activity_.load() + progress_.bytes_done(); }
  // "shard 'a' (no stream yet), shard 'b' (not finished)", or the device work in
  // flight: what the load still waits for.
  std::string DescribePending() const;

  // Aborts the load with `status` (idempotent; the first error wins) and reports
  // it. Waits for the writes and quantizations in flight (TensorPlacer::Release),
  // never for allocation, synchronization or a collective.
  void Fail(const absl::Status& status);
  bool failed() const { return aborted_.load(); }
  // Failed, or every shard is in (the outcome has been reported).
  bool finished() const {
    std::lock_guard<std::mutex> lock(mu_);
    return finished_;
  }
  absl::Status status() const;

 private:
  struct Shard {
    std::string file;
    std::optional<safetensors::ShardHeader> header;
    std::shared_ptr<ShardWriter> writer;  // holds the arenas while a stream may write
    bool active = false;                  // a stream took the writer and has not ended
    bool done = false;
  };

  // The memory and collective of a planned load, made outside mu_.
  struct Devices {
    std::vector<std::shared_ptr<Arena>> arenas;  // by rank
    std::shared_ptr<Collective> collective;
  };
  // What device work is in flight outside mu_ (DescribePending says it).
  enum class DeviceWork { kNone, kAllocating, kLanding };

  // Called with mu_ held once all headers are in: fills layout_ and reserves the
  // plan's device bytes in the accounting. No device call.
  absl::Status PlanLocked();
  // Without mu_: allocates the arenas and gets the group's collective; on failure
  // every byte reserved for them is released.
  absl::StatusOr<Devices> Allocate(const LoadLayout& layout);
  // Allocates, then publishes the placer and writers and resumes the waiting
  // streams; a load failed meanwhile drops what was allocated instead.
  absl::Status AllocateAndPublish(std::shared_ptr<const LoadLayout> layout);
  // Without mu_: waits for every rank's writes, then broadcasts the replicated tensors.
  absl::Status Land(const LoadLayout& layout, TensorPlacer& placer);
  absl::StatusOr<v1::Manifest> BuildManifestLocked();
  void Finish(absl::StatusOr<ResidentModel> result);

  const std::string model_id_;
  const v1::LoadModelRequest spec_;
  DeviceBackend& backend_;
  DeviceAccounting& accounting_;
  DoneCallback done_;
  LoadProgress progress_;
  std::atomic<bool> aborted_{false};
  std::atomic<uint64_t> activity_{0};
  uint64_t max_source_bytes_ = 0;

  mutable std::mutex mu_;
  absl::Status status_;
  bool finished_ = false;
  std::string config_json_;
  std::vector<Shard> shards_;
  std::map<std::string, size_t> shard_index_;
  std::vector<std::function<void(absl::Status)>> waiting_;
  bool planned_ = false;
  DeviceWork device_work_ = DeviceWork::kNone;
  std::shared_ptr<LoadLayout> layout_;  // set when planned; the placer and writers use its plan
  std::vector<std::shared_ptr<Arena>> arenas_;
  std::shared_ptr<TensorPlacer> placer_;  // shared with the writers
};

}  // namespace weightd
