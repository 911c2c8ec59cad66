// Prometheus metrics of the daemon, fed from the same accounting the planner
// and backends use (never estimates), served over HTTP by prometheus-cpp.
// Thread-safe (prometheus-cpp metrics are).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "services/device/accounting.h"
#include "services/registry/registry.h"

namespace weightd {

class Metrics {
 public:
  Metrics(const std::vector<uint64_t>& capacities, const std::string& version, bool cuda);

  // Starts the HTTP endpoint ("host:port"; port 0 picks one). Empty address: no endpoint.
  absl::Status Serve(const std::string& address);
  int port() const;

  void OnDeviceUsage(int device, const DeviceUsage& usage);
  void AddReceived(const std::string& source, uint64_t bytes);
  void OnLoadOutcome(const LoadOutcome& outcome);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::vector<prometheus::Gauge*> used_;
  std::vector<prometheus::Gauge*> peak_;
  prometheus::Family<prometheus::Counter>& received_;
  prometheus::Family<prometheus::Counter>& loads_;
  prometheus::Family<prometheus::Counter>& errors_;
  prometheus::Histogram* duration_;
  prometheus::Histogram* throughput_;
};

}  // namespace weightd
