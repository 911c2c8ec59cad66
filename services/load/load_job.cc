#include "services/load/load_job.h"

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "services/load/quant_config.h"
#include "services/metrics/labels.h"

namespace weightd {
namespace {

kernels::NonFinitePolicy PolicyOf(const v1::Quantization& q) {
  return q.nonfinite() == v1::NONFINITE_SATURATE ? kernels::NonFinitePolicy::kSaturate
                                                 : kernels::NonFinitePolicy::kFail;
}

std::vector<int> DevicesOf(const v1::Placement& placement) {
  uint32_t tp = placement.tp_size() == 0 ? 1 : placement.tp_size();
  std::vector<int> devices;
  for (uint32_t r = 0; r < tp; ++r) {
    devices.push_back(r < static_cast<uint32_t>(placement.devices_size())
                          ? static_cast<int>(placement.devices(r))
                          : static_cast<int>(r));
  }
  return devices;
}

}  // namespace

LoadJob::LoadJob(std::string model_id, v1::LoadModelRequest spec, DeviceBackend& backend,
                 DeviceAccounting& accounting, DoneCallback done)
    : model_id_(std::move(model_id)),
      spec_(std::move(spec)),
      backend_(backend),
      accounting_(accounting),
      done_(std::move(done)) {}

LoadJob::~LoadJob() = default;

void LoadJob::ExpectShards(std::vector<std::string> files, std::string config_json) {
  std::lock_guard<std::mutex> lock(mu_);
  config_json_ = std::move(config_json);
  shards_.clear();
  shard_index_.clear();
  for (std::string& f : files) {
    shard_index_[f] = shards_.size();
    shards_.push_back(Shard{std::move(f), std::nullopt, nullptr, false, false});
  }
}

bool LoadJob::ExpectsShard(const std::string& file) const {
  std::lock_guard<std::mutex> lock(mu_);
  return shard_index_.count(file) > 0;
}

bool LoadJob::AwaitsHeader(const std::string& file) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = shard_index_.find(file);
  return it != shard_index_.end() && !shards_[it->second].header.has_value();
}

absl::Status LoadJob::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

std::string LoadJob::DescribePending() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (device_work_ == DeviceWork::kAllocating) return "its device memory and collective (being set up)";
  if (device_work_ == DeviceWork::kLanding) {
    return "the final device synchronization and broadcast of replicated tensors (in flight)";
  }
  std::string out;
  for (const Shard& s : shards_) {
    if (s.done) continue;
    if (!out.empty()) out += ", ";
    absl::StrAppend(&out, "shard '", s.file, "' (", s.header ? "not finished" : "no stream yet", ")");
  }
  return out;
}

void LoadJob::OnShardHeader(const std::string& file, safetensors::ShardHeader header,
                            std::function<void(absl::Status)> resume) {
  ++activity_;
  // Exactly one call of `resume` per call of this function, always outside the lock.
  absl::Status refused;  // this stream alone is turned away; the load goes on
  absl::Status error;    // the load's
  std::shared_ptr<const LoadLayout> layout;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = shard_index_.find(file);
    if (!status_.ok()) {
      refused = status_;
    } else if (it == shard_index_.end()) {
      refused = absl::InvalidArgumentError(
          absl::StrCat("model '", model_id_, "' expects no shard named '", file, "'"));
    } else if (shards_[it->second].header.has_value()) {
      refused = absl::AlreadyExistsError(
          absl::StrCat("shard '", file, "' of model '", model_id_, "' is already being received"));
    } else {
      shards_[it->second].header = std::move(header);
      waiting_.push_back(std::move(resume));
      for (const Shard& s : shards_) {
        if (!s.header.has_value()) return;
      }
      error = PlanLocked();
      if (error.ok()) {
        layout = layout_;
        device_work_ = DeviceWork::kAllocating;
      }
    }
  }
  if (!refused.ok()) {
    resume(refused);
    return;
  }
  if (error.ok()) error = AllocateAndPublish(std::move(layout));
  if (!error.ok()) Fail(error);  // resumes every waiter, this one included
}

absl::Status LoadJob::PlanLocked() {
  std::vector<ShardInput> inputs;
  for (const Shard& s : shards_) inputs.push_back(ShardInput{s.file, *s.header});
  PlanOptions options;
  options.scheme = spec_.quantization().scheme();
  options.ignore.assign(spec_.quantization().ignore().begin(), spec_.quantization().ignore().end());
  options.devices = DevicesOf(spec_.placement());
  for (int d = 0; d < backend_.device_count(); ++d) options.device_granularity.push_back(backend_.granularity(d));
  options.sharding_rules = spec_.placement().sharding_rules();
  options.scale_scope = spec_.quantization().scale_scope() == v1::SCALE_SCOPE_SHARD ? v1::SCALE_SCOPE_SHARD
                                                                                     : v1::SCALE_SCOPE_TENSOR;
  options.layout = spec_.placement().layout() == v1::LAYOUT_VLLM ? v1::LAYOUT_VLLM : v1::LAYOUT_CHECKPOINT;
  // Heads matter only where ranks split them.
  if (options.devices.size() > 1) {
    WEIGHTD_ASSIGN_OR_RETURN(options.heads, AttentionHeadsFromConfig(config_json_));
  }
  layout_ = std::make_shared<LoadLayout>();
  WEIGHTD_ASSIGN_OR_RETURN(layout_->plan, PlanLoad(inputs, options));
  layout_->shards = std::move(inputs);
  layout_->config_json = config_json_;
  if (max_source_bytes_ > 0 && layout_->plan.source_bytes > max_source_bytes_) {
    return absl::ResourceExhaustedError(absl::StrCat("model '", model_id_, "': its shards hold ", layout_->plan.source_bytes,
                                                     " bytes, the limit (--max-model-bytes) is ", max_source_bytes_));
  }
  WEIGHTD_ASSIGN_OR_RETURN(config_json_, ConfigWithQuantization(config_json_, spec_.quantization().scheme(), layout_->plan.ignored_modules));
  progress_.set_totals(layout_->plan.source_bytes, layout_->plan.source_tensors);
  uint64_t quantized_bytes = 0;
  for (size_t s = 0; s < shards_.size(); ++s) {
    for (size_t t = 0; t < layout_->plan.tasks[s].size(); ++t) {
      if (layout_->plan.tasks[s][t].kind != TaskKind::kStore) quantized_bytes += shards_[s].header->tensors[t].size();
    }
  }
  progress_.set_quantized_bytes(quantized_bytes);
  progress_.set_phase(v1::PHASE_PLANNED);
  return accounting_.Reserve(layout_->plan.DeviceBytes(), absl::StrCat("model '", model_id_, "'"));
}

absl::StatusOr<LoadJob::Devices> LoadJob::Allocate(const LoadLayout& layout) {
  Devices devices;
  const std::vector<RankPlan>& ranks = layout.plan.ranks;
  for (size_t r = 0; r < ranks.size(); ++r) {
    absl::StatusOr<std::shared_ptr<Arena>> arena =
        Arena::Create(backend_, accounting_, ranks[r].device, ranks[r].arena_bytes,
                      absl::StrCat(model_id_, ":rank", ranks[r].rank));
    if (!arena.ok()) {
      // Create released this rank's bytes and the arenas made so far release theirs when
      // dropped; the ranks after it never got an arena, so their reservation goes here.
      std::vector<uint64_t> unused(static_cast<size_t>(accounting_.device_count()), 0);
      for (size_t later = r + 1; later < ranks.size(); ++later) {
        unused[static_cast<size_t>(ranks[later].device)] += ranks[later].arena_bytes;
      }
      accounting_.Release(unused);
      return arena.status();
    }
    devices.arenas.push_back(std::move(*arena));
  }
  WEIGHTD_ASSIGN_OR_RETURN(devices.collective, backend_.GroupCollective(DevicesOf(spec_.placement())));
  return devices;
}

absl::Status LoadJob::AllocateAndPublish(std::shared_ptr<const LoadLayout> layout) {
  absl::StatusOr<Devices> devices = Allocate(*layout);
  ++activity_;
  std::vector<std::function<void(absl::Status)>> wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    device_work_ = DeviceWork::kNone;
    if (!devices.ok()) return devices.status();
    // Failed while allocating (Fail has resumed the waiters and reported): the
    // memory goes below, with `devices`, on this thread.
    if (!status_.ok()) return absl::OkStatus();
    arenas_ = devices->arenas;
    placer_ = std::make_shared<TensorPlacer>(layout->plan, arenas_, backend_, devices->collective);
    kernels::NonFinitePolicy policy = PolicyOf(spec_.quantization());
    for (size_t s = 0; s < shards_.size(); ++s) {
      shards_[s].writer = std::make_shared<ShardWriter>(shards_[s].file, *shards_[s].header, layout->plan.tasks[s],
                                                        placer_, policy, progress_, aborted_);
      shards_[s].writer->set_owner(weak_from_this());
    }
    planned_ = true;
    progress_.set_phase(v1::PHASE_LOADING);
    wake.swap(waiting_);
  }
  LogEvent(LogLevel::kInfo, "load_planned",
           {{"model", model_id_}, {"source", SourceLabel(spec_.source())},
            {"scheme", SchemeLabel(spec_.quantization().scheme())}, {"result", "ok"},
            {"seconds", progress_.seconds()}, {"bytes", layout->plan.source_bytes}, {"tensors", layout->plan.source_tensors},
            {"quantized", layout->plan.quantized_tensors}, {"quantized_bytes", progress_.quantized_bytes()},
            {"arena_bytes", layout->plan.ranks[0].arena_bytes}, {"ranks", layout->plan.ranks.size()}});
  for (auto& w : wake) w(absl::OkStatus());
  return absl::OkStatus();
}

bool LoadJob::StreamsTensor(const std::string& file, size_t index) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = shard_index_.find(file);
  if (it == shard_index_.end() || !planned_ || it->second >= layout_->plan.tasks.size()) return false;
  const auto& tasks = layout_->plan.tasks[it->second];
  const Shard& shard = shards_[it->second];
  return index < tasks.size() && shard.header.has_value() && index < shard.header->tensors.size() &&
         TensorPlacer::Streams(tasks[index], shard.header->tensors[index]);
}

std::shared_ptr<const LoadLayout> LoadJob::layout() const {
  std::lock_guard<std::mutex> lock(mu_);
  return planned_ ? layout_ : nullptr;
}

std::shared_ptr<TensorPlacer> LoadJob::placer() const {
  std::lock_guard<std::mutex> lock(mu_);
  return planned_ && status_.ok() ? placer_ : nullptr;
}

std::vector<std::shared_ptr<Arena>> LoadJob::arenas() const {
  std::lock_guard<std::mutex> lock(mu_);
  return planned_ && status_.ok() ? arenas_ : std::vector<std::shared_ptr<Arena>>{};
}

ShardWriter* LoadJob::Writer(const std::string& file) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = shard_index_.find(file);
  if (it == shard_index_.end() || !planned_ || !status_.ok()) return nullptr;
  Shard& shard = shards_[it->second];
  shard.active = shard.writer != nullptr;
  return shard.writer.get();
}

void LoadJob::OnShardDone(const std::string& file, const absl::Status& status) {
  ++activity_;
  if (!status.ok()) Fail(status);
  std::shared_ptr<const LoadLayout> layout;
  std::shared_ptr<TensorPlacer> placer;
  // Held while the device work runs, whatever a Fail meanwhile drops.
  std::vector<std::shared_ptr<Arena>> arenas;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = shard_index_.find(file);
    if (it == shard_index_.end()) return;
    Shard& shard = shards_[it->second];
    shard.active = false;
    if (!status_.ok() || finished_) {
      shard.writer.reset();
      return;
    }
    shard.done = true;
    for (const Shard& s : shards_) {
      if (!s.done) return;
    }
    device_work_ = DeviceWork::kLanding;
    layout = layout_;
    placer = placer_;
    arenas = arenas_;
  }
  const double read_seconds = progress_.seconds();
  const absl::Status landed = Land(*layout, *placer);
  ++activity_;
  LogEvent(LogLevel::kDebug, "load_landed",
           {{"model", model_id_}, {"read_seconds", read_seconds}, {"land_seconds", progress_.seconds() - read_seconds},
            {"scale_seconds_all_threads", placer->scale_seconds()}, {"parked_tensors", placer->parked_tensors()},
            {"rests_in_arena", placer->rests_in_arena()}});
  absl::StatusOr<ResidentModel> result;
  {
    std::lock_guard<std::mutex> lock(mu_);
    device_work_ = DeviceWork::kNone;
    // Failed while landing (a forced unload, shutdown): Fail has reported it, and
    // the memory goes when `arenas` does, on this thread.
    if (!status_.ok()) return;
    auto manifest = landed.ok() ? BuildManifestLocked() : absl::StatusOr<v1::Manifest>(landed);
    if (!manifest.ok()) {
      status_ = manifest.status();
      result = manifest.status();
    } else {
      result = ResidentModel{std::move(*manifest), arenas_, layout_};
    }
    finished_ = true;
    // The writers hold the arenas too; drop them now that every byte is in.
    for (Shard& s : shards_) s.writer.reset();
    arenas_.clear();
    placer_.reset();
  }
  if (result.ok()) progress_.set_phase(v1::PHASE_READY);
  Finish(std::move(result));
}

absl::Status LoadJob::Land(const LoadLayout& layout, TensorPlacer& placer) {
  for (const RankPlan& rank : layout.plan.ranks) WEIGHTD_RETURN_IF_ERROR(backend_.Synchronize(rank.device));
  // Replicated tensors are on rank 0 only until now.
  return placer.BroadcastReplicas();
}

absl::StatusOr<v1::Manifest> LoadJob::BuildManifestLocked() {
  v1::Manifest m;
  m.set_model_id(model_id_);
  m.set_state(v1::MODEL_STATE_READY);
  *m.mutable_spec() = spec_;
  m.set_config_json(config_json_);
  m.set_source_bytes(layout_->plan.source_bytes);
  uint64_t resident = 0;
  for (size_t r = 0; r < layout_->plan.ranks.size(); ++r) {
    const RankPlan& plan = layout_->plan.ranks[r];
    v1::RankManifest* rank = m.add_ranks();
    rank->set_rank(plan.rank);
    rank->set_device(static_cast<uint32_t>(plan.device));
    rank->set_device_kind(backend_.kind());
    v1::Allocation* alloc = rank->add_allocations();
    alloc->set_id(0);
    alloc->set_size(arenas_[r]->allocation().size());
    alloc->set_handle_type(arenas_[r]->allocation().handle_type());
    resident += arenas_[r]->reserved_bytes();
    for (const OutputTensor& t : plan.tensors) {
      v1::TensorEntry* e = rank->add_tensors();
      e->set_name(t.name);
      e->set_dtype(std::string(kernels::DTypeName(t.dtype)));
      for (int64_t d : t.shape) e->add_shape(d);
      e->set_allocation(0);
      e->set_offset(t.offset);
      e->set_size(t.size);
      if (t.slice_dim >= 0) {
        v1::TensorSlice* slice = e->mutable_slice();
        slice->set_dim(static_cast<uint32_t>(t.slice_dim));
        slice->set_begin(t.slice_begin);
        for (int64_t d : t.full_shape) slice->add_full_shape(d);
      }
    }
  }
  m.set_resident_bytes(resident);
  return m;
}

void LoadJob::Fail(const absl::Status& status) {
  std::vector<std::function<void(absl::Status)>> wake;
  std::shared_ptr<TensorPlacer> placer;
  std::vector<std::shared_ptr<ShardWriter>> in_use;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!status_.ok() || finished_) return;
    status_ = status;
    finished_ = true;
    aborted_ = true;
    wake.swap(waiting_);
    // A writer in use holds the arena until its stream ends; the memory goes with the last.
    for (Shard& s : shards_) {
      if (!s.active) s.writer.reset();
      if (s.writer) in_use.push_back(s.writer);
    }
    arenas_.clear();
    placer.swap(placer_);
  }
  // Their streams stop waiting for a placement in flight (which may never end).
  for (const auto& writer : in_use) writer->OnAborted();
  in_use.clear();
  // Writers still in use hold the placer; the arenas go now, before the failure is told.
  if (placer) placer->Release();
  for (auto& w : wake) w(status);
  Finish(status);
}

void LoadJob::Finish(absl::StatusOr<ResidentModel> result) {
  DoneCallback done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    done = std::move(done_);
    done_ = nullptr;
  }
  if (done) done(this, std::move(result));
}

}  // namespace weightd
