// Prometheus metrics of the daemon, fed from the same ledgers the planner and
// backends use (DeviceAccounting, HostPinnedAccounting, the registry's
// outcomes), never from estimates, and served over HTTP by prometheus-cpp.
// The per-model series exist while the model is resident. Models by state and
// active leases are read from the registry at scrape time.
// Thread-safe (prometheus-cpp metrics are; the rest is under mu_).
#pragma once

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "services/device/accounting.h"
#include "services/registry/registry.h"
#include "services/build_features.h"

namespace weightd {

class Metrics {
 public:
  // weightd_build_info carries the version and the build's features.
  Metrics(const std::vector<uint64_t>& capacities, const std::string& version, const BuildFeatures& build);
  ~Metrics();

  // Starts the HTTP endpoint ("host:port"; port 0 picks one). Empty address: no endpoint.
  absl::Status Serve(const std::string& address);
  int port() const;

  // Where scrapes read weightd_models{state} and weightd_active_leases. Both must stay
  // callable until they are replaced; empty functions (the default) report zeros.
  void SetRegistryView(std::function<std::vector<v1::ModelInfo>()> models, std::function<size_t()> leases);

  void OnDeviceUsage(int device, const DeviceUsage& usage);
  void OnHostPinned(uint64_t used, uint64_t peak);
  // Pushed bytes held on the host (services/load/host_budget.h).
  void OnPushBuffers(uint64_t used, uint64_t peak);
  void AddReceived(const std::string& source, uint64_t bytes);
  // Peers (docs/cluster.md): item bytes served to and received from each peer,
  // and the serving streams open now.
  void AddPeerServed(const std::string& peer, uint64_t bytes);
  void AddPeerReceived(const std::string& peer, uint64_t bytes);
  void AddPeerServingStreams(int delta);
  void OnLoadOutcome(const LoadOutcome& outcome);
  void OnModelUnloaded(const std::string& model_id);

 private:
  class Live;

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<Live> live_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::vector<prometheus::Gauge*> used_;
  std::vector<prometheus::Gauge*> peak_;
  prometheus::Gauge* pinned_used_;
  prometheus::Gauge* pinned_peak_;
  prometheus::Gauge* push_buffer_used_;
  prometheus::Gauge* push_buffer_peak_;
  prometheus::Family<prometheus::Gauge>& load_peak_;
  prometheus::Family<prometheus::Gauge>& resident_;
  prometheus::Family<prometheus::Counter>& received_;
  prometheus::Family<prometheus::Counter>& peer_bytes_;
  prometheus::Gauge* peer_streams_;
  prometheus::Family<prometheus::Counter>& quantized_;
  prometheus::Family<prometheus::Counter>& loads_;
  prometheus::Family<prometheus::Counter>& errors_;
  prometheus::Histogram* duration_;
  prometheus::Histogram* peer_duration_;
  prometheus::Histogram* throughput_;

  struct ModelSeries {
    prometheus::Family<prometheus::Gauge>* family;
    prometheus::Gauge* gauge;
  };
  std::mutex mu_;
  std::map<std::string, std::vector<ModelSeries>> model_series_;  // removed on unload
};

}  // namespace weightd
