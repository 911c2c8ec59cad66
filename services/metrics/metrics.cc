#include "services/metrics/metrics.h"

#include "absl/strings/str_cat.h"

namespace weightd {

Metrics::Metrics(const std::vector<uint64_t>& capacities, const std::string& version, bool cuda)
    : registry_(std::make_shared<prometheus::Registry>()),
      received_(prometheus::BuildCounter()
                    .Name("weightd_received_bytes_total")
                    .Help("Checkpoint bytes taken from each kind of source")
                    .Register(*registry_)),
      loads_(prometheus::BuildCounter()
                 .Name("weightd_loads_total")
                 .Help("Finished loads by result")
                 .Register(*registry_)),
      errors_(prometheus::BuildCounter()
                  .Name("weightd_errors_total")
                  .Help("Failed loads by status code")
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
  prometheus::BuildGauge()
      .Name("weightd_build_info")
      .Help("Version and build features")
      .Register(*registry_)
      .Add({{"version", version}, {"cuda", cuda ? "true" : "false"}})
      .Set(1);
  duration_ = &prometheus::BuildHistogram()
                   .Name("weightd_load_duration_seconds")
                   .Help("Wall time of finished loads")
                   .Register(*registry_)
                   .Add({}, prometheus::Histogram::BucketBoundaries{0.1, 0.5, 1, 5, 15, 60, 180, 600, 1800});
  throughput_ = &prometheus::BuildHistogram()
                     .Name("weightd_load_throughput_bytes_per_second")
                     .Help("Source bytes per second of successful loads")
                     .Register(*registry_)
                     .Add({}, prometheus::Histogram::BucketBoundaries{1e8, 5e8, 1e9, 2e9, 5e9, 1e10, 2e10, 5e10});
}

absl::Status Metrics::Serve(const std::string& address) {
  if (address.empty()) return absl::OkStatus();
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(address);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("metrics address '", address, "': ", e.what()));
  }
  exposer_->RegisterCollectable(registry_);
  return absl::OkStatus();
}

int Metrics::port() const {
  if (!exposer_) return 0;
  auto ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports[0];
}

void Metrics::OnDeviceUsage(int device, const DeviceUsage& usage) {
  if (device < 0 || static_cast<size_t>(device) >= used_.size()) return;
  used_[device]->Set(static_cast<double>(usage.used));
  peak_[device]->Set(static_cast<double>(usage.peak));
}

void Metrics::AddReceived(const std::string& source, uint64_t bytes) {
  received_.Add({{"source", source}}).Increment(static_cast<double>(bytes));
}

void Metrics::OnLoadOutcome(const LoadOutcome& outcome) {
  if (outcome.status.ok()) {
    loads_.Add({{"result", "ok"}}).Increment();
    duration_->Observe(outcome.seconds);
    if (outcome.seconds > 0) throughput_->Observe(static_cast<double>(outcome.source_bytes) / outcome.seconds);
  } else {
    loads_.Add({{"result", "error"}}).Increment();
    errors_.Add({{"code", absl::StatusCodeToString(outcome.status.code())}}).Increment();
  }
}

}  // namespace weightd
