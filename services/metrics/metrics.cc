#include "services/metrics/metrics.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "services/metrics/labels.h"

namespace weightd {
namespace {

constexpr const char* kResults[] = {"ok", "error", "refused", "aborted"};
constexpr const char* kSources[] = {"path", "push", "peer"};
constexpr v1::ModelState kStates[] = {v1::MODEL_STATE_LOADING, v1::MODEL_STATE_READY, v1::MODEL_STATE_FAILED,
                                      v1::MODEL_STATE_UNLOADING};

std::string StateLabel(v1::ModelState state) {
  return absl::AsciiStrToLower(absl::StripPrefix(v1::ModelState_Name(state), "MODEL_STATE_"));
}

prometheus::ClientMetric GaugeSample(double value, std::vector<prometheus::ClientMetric::Label> labels = {}) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  m.gauge.value = value;
  return m;
}

}  // namespace

// Gauges computed at scrape time from the registry, so they can never drift from it.
class Metrics::Live : public prometheus::Collectable {
 public:
  void Set(std::function<std::vector<v1::ModelInfo>()> models, std::function<size_t()> leases) {
    std::lock_guard<std::mutex> lock(mu_);
    models_ = std::move(models);
    leases_ = std::move(leases);
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::map<v1::ModelState, double> by_state;
    for (v1::ModelState s : kStates) by_state[s] = 0;
    double leases = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (models_) {
        for (const v1::ModelInfo& info : models_()) by_state[info.state()] += 1;
      }
      if (leases_) leases = static_cast<double>(leases_());
    }
    prometheus::MetricFamily models{"weightd_models", "Models known to the registry, by state",
                                    prometheus::MetricType::Gauge, {}};
    for (const auto& [state, n] : by_state) models.metric.push_back(GaugeSample(n, {{"state", StateLabel(state)}}));
    prometheus::MetricFamily active{"weightd_active_leases",
                                    "Handle-socket connections holding a model's memory",
                                    prometheus::MetricType::Gauge, {GaugeSample(leases)}};
    return {models, active};
  }

 private:
  // Held while the registry is read, so clearing the view waits for a scrape in progress.
  mutable std::mutex mu_;
  std::function<std::vector<v1::ModelInfo>()> models_;
  std::function<size_t()> leases_;
};

Metrics::Metrics(const std::vector<uint64_t>& capacities, const std::string& version, const BuildFeatures& build)
    : registry_(std::make_shared<prometheus::Registry>()),
      live_(std::make_shared<Live>()),
      load_peak_(prometheus::BuildGauge()
                     .Name("weightd_load_device_memory_peak_bytes")
                     .Help("Most device memory the model's load held on the device (arena plus staging)")
                     .Register(*registry_)),
      resident_(prometheus::BuildGauge()
                    .Name("weightd_model_resident_bytes")
                    .Help("Device memory a resident model holds on the device")
                    .Register(*registry_)),
      received_(prometheus::BuildCounter()
                    .Name("weightd_received_bytes_total")
                    .Help("Shard file bytes taken from each kind of source, headers included")
                    .Register(*registry_)),
      peer_bytes_(prometheus::BuildCounter()
                      .Name("weightd_peer_bytes_total")
                      .Help("Model bytes moved between this daemon and each peer (direction: served, received)")
                      .Register(*registry_)),
      quantized_(prometheus::BuildCounter()
                     .Name("weightd_quantized_bytes_total")
                     .Help("Source bytes of the tensors quantized by successful loads, by scheme")
                     .Register(*registry_)),
      loads_(prometheus::BuildCounter()
                 .Name("weightd_loads_total")
                 .Help("Load outcomes: ok, error (failed), refused (before starting), aborted (forced unload)")
                 .Register(*registry_)),
      errors_(prometheus::BuildCounter()
                  .Name("weightd_errors_total")
                  .Help("Loads that did not succeed, by status code")
                  .Register(*registry_)) {
  auto& used = prometheus::BuildGauge()
                   .Name("weightd_device_memory_used_bytes")
                   .Help("Device memory weightd holds now")
                   .Register(*registry_);
  auto& peak = prometheus::BuildGauge()
                   .Name("weightd_device_memory_peak_bytes")
                   .Help("High-water mark of weightd's device memory since start")
                   .Register(*registry_);
  auto& capacity = prometheus::BuildGauge()
                       .Name("weightd_device_memory_capacity_bytes")
                       .Help("Device memory weightd may use (capacity or --device-memory-limit)")
                       .Register(*registry_);
  for (size_t d = 0; d < capacities.size(); ++d) {
    std::map<std::string, std::string> labels{{"device", std::to_string(d)}};
    used_.push_back(&used.Add(labels));
    peak_.push_back(&peak.Add(labels));
    capacity.Add(labels).Set(static_cast<double>(capacities[d]));
  }
  pinned_used_ = &prometheus::BuildGauge()
                      .Name("weightd_host_pinned_memory_used_bytes")
                      .Help("Page-locked host memory weightd holds now (staging; 0 on the host backend)")
                      .Register(*registry_)
                      .Add({});
  pinned_peak_ = &prometheus::BuildGauge()
                      .Name("weightd_host_pinned_memory_peak_bytes")
                      .Help("High-water mark of page-locked host memory since start")
                      .Register(*registry_)
                      .Add({});
  push_buffer_used_ = &prometheus::BuildGauge()
                           .Name("weightd_host_push_buffer_bytes")
                           .Help("Pushed bytes held on the host now: received messages and tensors gathered for "
                                 "quantization (bounded by --host-memory-limit)")
                           .Register(*registry_)
                           .Add({});
  push_buffer_peak_ = &prometheus::BuildGauge()
                           .Name("weightd_host_push_buffer_peak_bytes")
                           .Help("High-water mark of weightd_host_push_buffer_bytes since start")
                           .Register(*registry_)
                           .Add({});
  prometheus::BuildGauge()
      .Name("weightd_build_info")
      .Help("Version and build features")
      .Register(*registry_)
      .Add({{"version", version}, {"cuda", build.cuda ? "true" : "false"}, {"nccl", build.nccl ? "true" : "false"}})
      .Set(1);
  // Every series that rate() and alerts use exists from the start, at 0.
  for (const char* source : kSources) received_.Add({{"source", source}});
  peer_streams_ = &prometheus::BuildGauge()
                       .Name("weightd_peer_serving_streams")
                       .Help("ServePeer streams this daemon serves now")
                       .Register(*registry_)
                       .Add({});
  for (const char* result : kResults) loads_.Add({{"result", result}});
  duration_ = &prometheus::BuildHistogram()
                   .Name("weightd_load_duration_seconds")
                   .Help("Wall time of successful loads, from LoadModel to READY")
                   .Register(*registry_)
                   .Add({}, prometheus::Histogram::BucketBoundaries{0.1, 0.5, 1, 5, 15, 60, 180, 600, 1800});
  peer_duration_ = &prometheus::BuildHistogram()
                        .Name("weightd_peer_load_duration_seconds")
                        .Help("Wall time of successful loads whose bytes came from a peer, from LoadModel to READY")
                        .Register(*registry_)
                        .Add({}, prometheus::Histogram::BucketBoundaries{0.1, 0.5, 1, 5, 15, 60, 180, 600, 1800});
  throughput_ = &prometheus::BuildHistogram()
                     .Name("weightd_load_throughput_bytes_per_second")
                     .Help("Source bytes per second of successful loads")
                     .Register(*registry_)
                     .Add({}, prometheus::Histogram::BucketBoundaries{1e8, 5e8, 1e9, 2e9, 5e9, 1e10, 2e10, 5e10});
}

Metrics::~Metrics() {
  // The HTTP threads stop before the metrics they read go away.
  exposer_.reset();
}

absl::Status Metrics::Serve(const std::string& address) {
  if (address.empty()) return absl::OkStatus();
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(address);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("metrics address '", address, "': ", e.what()));
  }
  // prometheus-cpp 1.0 always adds the exposer's own exposer_* series; it has no switch for them.
  exposer_->RegisterCollectable(registry_);
  exposer_->RegisterCollectable(live_);
  return absl::OkStatus();
}

int Metrics::port() const {
  if (!exposer_) return 0;
  auto ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports[0];
}

void Metrics::SetRegistryView(std::function<std::vector<v1::ModelInfo>()> models,
                              std::function<size_t()> leases) {
  live_->Set(std::move(models), std::move(leases));
}

void Metrics::OnDeviceUsage(int device, const DeviceUsage& usage) {
  if (device < 0 || static_cast<size_t>(device) >= used_.size()) return;
  used_[device]->Set(static_cast<double>(usage.used));
  peak_[device]->Set(static_cast<double>(usage.peak));
}

void Metrics::OnHostPinned(uint64_t used, uint64_t peak) {
  pinned_used_->Set(static_cast<double>(used));
  pinned_peak_->Set(static_cast<double>(peak));
}

void Metrics::OnPushBuffers(uint64_t used, uint64_t peak) {
  push_buffer_used_->Set(static_cast<double>(used));
  push_buffer_peak_->Set(static_cast<double>(peak));
}

void Metrics::AddReceived(const std::string& source, uint64_t bytes) {
  received_.Add({{"source", source}}).Increment(static_cast<double>(bytes));
}

void Metrics::AddPeerServed(const std::string& peer, uint64_t bytes) {
  peer_bytes_.Add({{"direction", "served"}, {"peer", peer}}).Increment(static_cast<double>(bytes));
}

void Metrics::AddPeerReceived(const std::string& peer, uint64_t bytes) {
  peer_bytes_.Add({{"direction", "received"}, {"peer", peer}}).Increment(static_cast<double>(bytes));
  AddReceived("peer", bytes);
}

void Metrics::AddPeerServingStreams(int delta) { peer_streams_->Increment(delta); }

void Metrics::OnLoadOutcome(const LoadOutcome& outcome) {
  loads_.Add({{"result", outcome.result}}).Increment();
  if (!outcome.status.ok()) {
    errors_.Add({{"code", ResultLabel(outcome.status)}}).Increment();
    return;
  }
  quantized_.Add({{"scheme", outcome.scheme}}).Increment(static_cast<double>(outcome.quantized_bytes));
  duration_->Observe(outcome.seconds);
  if (outcome.source == "peer") peer_duration_->Observe(outcome.seconds);
  if (outcome.seconds > 0) throughput_->Observe(static_cast<double>(outcome.source_bytes) / outcome.seconds);

  std::vector<ModelSeries> series;
  for (const auto& [device, bytes] : outcome.resident_bytes) {
    prometheus::Gauge& g = resident_.Add({{"model", outcome.model_id}, {"device", std::to_string(device)}});
    g.Set(static_cast<double>(bytes));
    series.push_back({&resident_, &g});
  }
  for (const auto& [device, bytes] : outcome.device_peak_bytes) {
    prometheus::Gauge& g = load_peak_.Add({{"model", outcome.model_id}, {"device", std::to_string(device)}});
    g.Set(static_cast<double>(bytes));
    series.push_back({&load_peak_, &g});
  }
  std::lock_guard<std::mutex> lock(mu_);
  model_series_[outcome.model_id] = std::move(series);
}

void Metrics::OnModelUnloaded(const std::string& model_id) {
  std::vector<ModelSeries> series;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = model_series_.find(model_id);
    if (it == model_series_.end()) return;
    series = std::move(it->second);
    model_series_.erase(it);
  }
  for (const ModelSeries& s : series) s.family->Remove(s.gauge);
}

}  // namespace weightd
