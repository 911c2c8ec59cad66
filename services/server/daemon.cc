#include "services/server/daemon.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/log.h"
#include "base/pem_file.h"
#include "base/status_macros.h"
#include "services/device/accounting.h"
#include "services/device/pinned_accounting.h"
#include "services/server/backend_factory.h"
#include "services/build_features.h"
#include "services/executor.h"
#include "services/handoff/handle_server.h"
#include "services/metrics/metrics.h"
#include "services/registry/registry.h"
#include "services/server/loader_service.h"
#include "services/server/unix_listener.h"

namespace weightd {
namespace {

constexpr char kVersion[] = "0.1.0";
// The largest gRPC message either way, and the largest raw push frame.
constexpr int kMaxMessageBytes = 64 << 20;

// Hands a READY model's memory to a worker; the connection is the lease.
class RegistryAttachHandler : public handoff::AttachHandler {
 public:
  explicit RegistryAttachHandler(Registry& registry) : registry_(registry) {}
  handoff::AttachGrant Attach(const handoff::PeerCredentials& peer, const v1::AttachRequest& request) override {
    handoff::AttachGrant grant;
    auto lease = registry_.AcquireLease(request.model_id(), request.rank());
    if (!lease.ok()) {
      grant.response.set_code(static_cast<int>(lease.status().code()));
      grant.response.set_message(std::string(lease.status().message()));
      return grant;
    }
    grant.response.set_lease_id(lease->lease_id);
    *grant.response.mutable_manifest() = lease->manifest;
    grant.fds = std::move(lease->fds);
    uint64_t id = lease->lease_id;
    Registry* registry = &registry_;
    auto start = std::chrono::steady_clock::now();
    grant.on_lease_end = [registry, id, start, model = request.model_id(), rank = request.rank()] {
      registry->ReleaseLease(id);
      double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      LogEvent(LogLevel::kInfo, "lease_end", {{"model", model}, {"rank", rank}, {"lease", id}, {"seconds", seconds}});
    };
    LogEvent(LogLevel::kInfo, "lease_start", {{"model", request.model_id()}, {"rank", request.rank()},
                                              {"lease", id}, {"pid", static_cast<int64_t>(peer.pid)},
                                              {"uid", static_cast<int64_t>(peer.uid)}});
    return grant;
  }

 private:
  Registry& registry_;
};

std::string SocketPath(const std::string& address) {
  if (absl::StartsWith(address, "unix://")) return address.substr(7);
  if (absl::StartsWith(address, "unix:")) return address.substr(5);
  return "";
}

// TLS for TCP listeners: a certificate and key, and with a client CA, mutual TLS
// (clients must present a certificate it signed). TLS without client certificates,
// and plain TCP, only when asked for: anyone who reaches such a port may load and
// unload models.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> TcpCredentials(const DaemonOptions& o,
                                                                         const std::string& address) {
  if (o.tls_cert_file.empty() != o.tls_key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  if (o.tls_allow_unauthenticated_clients && !o.tls_client_ca_file.empty()) {
    return absl::InvalidArgumentError("--tls-allow-unauthenticated-clients contradicts --tls-client-ca");
  }
  if (o.tls_cert_file.empty()) {
    if (!o.tls_client_ca_file.empty()) return absl::InvalidArgumentError("--tls-client-ca needs --tls-cert and --tls-key");
    if (o.insecure_tcp) return grpc::InsecureServerCredentials();
    return absl::InvalidArgumentError(absl::StrCat("TCP listener ", address,
                                                   " needs --tls-cert and --tls-key (or --insecure-tcp)"));
  }
  if (o.tls_client_ca_file.empty() && !o.tls_allow_unauthenticated_clients) {
    return absl::InvalidArgumentError(absl::StrCat(
        "TCP listener ", address, " needs --tls-client-ca: without client certificates anyone who reaches the "
        "port may load and unload models (--tls-allow-unauthenticated-clients accepts that)"));
  }
  grpc::SslServerCredentialsOptions ssl;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  WEIGHTD_ASSIGN_OR_RETURN(pair.cert_chain, ReadPemFile(o.tls_cert_file, "--tls-cert"));
  WEIGHTD_ASSIGN_OR_RETURN(pair.private_key, ReadPemFile(o.tls_key_file, "--tls-key"));
  ssl.pem_key_cert_pairs.push_back(pair);
  if (!o.tls_client_ca_file.empty()) {
    WEIGHTD_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPemFile(o.tls_client_ca_file, "--tls-client-ca"));
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

// 16 random hex digits: how a daemon tells its own answer among its peers'.
std::string RandomInstanceId() {
  std::random_device random;
  return absl::StrFormat("%08x%08x", random(), random());
}

// A TCP listener that any client reaching the port may use, said at every start.
void WarnUnauthenticatedTcp(const DaemonOptions& o, const std::string& address) {
  if (!o.tls_cert_file.empty() && !o.tls_client_ca_file.empty()) return;
  LogEvent(LogLevel::kWarning, "tcp_unauthenticated",
           {{"address", address},
            {"transport", o.tls_cert_file.empty() ? "plain (--insecure-tcp)"
                                                  : "TLS without client certificates "
                                                    "(--tls-allow-unauthenticated-clients)"},
            {"risk", "anyone who reaches the port may load and unload models"}});
}

void EnsureParentDir(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return;
  std::string dir = path.substr(0, slash);
  ::mkdir(dir.c_str(), 0750);
}

}  // namespace

struct Daemon::State {
  // Before the backend, which may count its page-locked staging buffers here.
  std::unique_ptr<HostPinnedAccounting> pinned = std::make_unique<HostPinnedAccounting>();
  std::unique_ptr<DeviceBackend> backend;
  std::unique_ptr<DeviceAccounting> accounting;
  std::unique_ptr<Metrics> metrics;
  std::unique_ptr<Registry> registry;
  std::unique_ptr<HostBudget> host_budget;  // outlives the streams that charge it
  std::unique_ptr<PushPinning> push_pinning;  // outlives the streams it counts
  std::unique_ptr<RawPushCalls> raw_push_calls;
  std::unique_ptr<DeadlineTimer> push_silence_timer;  // outlives the server, whose calls cancel on it
  std::unique_ptr<Executor> placement;  // outlives `work`, whose drain tasks wait on it
  std::unique_ptr<Executor> work;
  std::unique_ptr<Executor> loaders;
  std::unique_ptr<ServeLimiter> peer_limiter;
  std::unique_ptr<PeerDirectory> peer_directory;
  std::unique_ptr<LoaderService> service;
  std::unique_ptr<StallWatchdog> push_watchdog;
  std::unique_ptr<grpc::Server> server;
  std::vector<std::unique_ptr<UnixListener>> unix_listeners;
  std::unique_ptr<RegistryAttachHandler> attach_handler;
  std::unique_ptr<handoff::HandleServer> handles;
  std::unique_ptr<grpc::Server> health_server;  // --health-address: the health service alone
  bool shut_down = false;
  size_t abandoned_threads = 0;  // executor threads Shutdown left in a task
  std::chrono::seconds shutdown_grace{10};  // DaemonOptions::shutdown_grace
  // Turns health NOT_SERVING when a socket's thread has ended (not by Shutdown).
  std::thread health_monitor;
  std::mutex monitor_mu;
  std::condition_variable monitor_cv;
  bool monitor_stop = false;

  void MonitorHealth() {
    std::unique_lock<std::mutex> lock(monitor_mu);
    while (!monitor_cv.wait_for(lock, std::chrono::milliseconds(200), [this] { return monitor_stop; })) {
      std::string dead;
      if (handles && !handles->serving()) dead = "handle socket";
      for (const auto& listener : unix_listeners) {
        if (!listener->serving()) dead = "gRPC Unix socket";
      }
      if (dead.empty()) continue;
      server->GetHealthCheckService()->SetServingStatus(false);
      if (health_server) health_server->GetHealthCheckService()->SetServingStatus(false);
      LogEvent(LogLevel::kError, "unhealthy",
               {{"component", dead}, {"reason", "its thread has ended; health is NOT_SERVING until a restart"}});
      return;
    }
  }

  // The backend frees its pinned staging buffers after the metrics are gone.
  ~State() {
    if (pinned) pinned->set_observer(nullptr);
    if (accounting) accounting->set_observer(nullptr);
  }
};

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(const DaemonOptions& options) {
  auto state = std::make_unique<State>();
  state->raw_push_calls = std::make_unique<RawPushCalls>(options.max_raw_push_connections);
  const ContainerLimits limits =
      options.limits.memory_bytes > 0 ? options.limits : ReadContainerLimits("/", ReadNodeResources());
  const BuildFeatures build = CompiledFeatures();
  BackendOptions backend_options;
  backend_options.backend = options.backend;
  backend_options.host_devices = options.host_devices;
  backend_options.host_memory_bytes = limits.memory_bytes;
  backend_options.host_write_bytes_per_second = options.host_write_bytes_per_second;
  backend_options.cuda_handles = options.cuda_handles;
  backend_options.staging_ring_bytes = options.staging_ring_bytes;
  backend_options.staging_slots = options.staging_slots;
  backend_options.staging_copy_streams = options.staging_copy_streams;
  backend_options.staging_waits = options.staging_waits;
  backend_options.scales_from_slots = options.scales_from_slots;
  backend_options.park_per_tensor = options.park_per_tensor;
  backend_options.park_rest_in_arena = options.park_rest_in_arena;
  backend_options.pin_sources = options.pin_path_sources || options.pin_pushed_max_streams > 0;
  backend_options.nccl_min_ranks = options.nccl_min_ranks;
  backend_options.pinned = state->pinned.get();
  backend_options.test_hang_collective = options.test_hang_collective;
  auto backend = CreateBackend(backend_options);
  if (!backend.ok()) return backend.status();
  state->backend = std::move(*backend);
  std::vector<uint64_t> device_limits;
  for (int d = 0; d < state->backend->device_count(); ++d) {
    uint64_t cap = state->backend->capacity(d);
    device_limits.push_back(options.device_memory_limit > 0 ? std::min(cap, options.device_memory_limit) : cap);
  }
  state->accounting = std::make_unique<DeviceAccounting>(device_limits);
  state->metrics = std::make_unique<Metrics>(device_limits, kVersion, build);
  Metrics* metrics = state->metrics.get();
  state->accounting->set_observer([metrics](int d, const DeviceUsage& u) { metrics->OnDeviceUsage(d, u); });
  state->pinned->set_observer([metrics](uint64_t used, uint64_t peak) { metrics->OnHostPinned(used, peak); });
  metrics->OnHostPinned(state->pinned->used(), state->pinned->peak());
  // The backend's own memory (the staging ring) counts from the start.
  std::vector<uint64_t> reserved;
  for (int d = 0; d < state->backend->device_count(); ++d) reserved.push_back(state->backend->reserved_bytes(d));
  absl::Status fits = state->accounting->Reserve(reserved, "the staging ring");
  if (!fits.ok()) return fits;
  state->backend->set_accounting(state->accounting.get());
  RegistryLimits registry_limits;
  registry_limits.max_source_bytes = options.max_model_bytes;
  registry_limits.max_concurrent_loads = options.max_concurrent_loads;
  state->registry = std::make_unique<Registry>(*state->backend, *state->accounting, registry_limits);
  state->registry->set_outcome_observer([metrics](const LoadOutcome& o) { metrics->OnLoadOutcome(o); });
  state->registry->set_unloaded_observer([metrics](const std::string& id) { metrics->OnModelUnloaded(id); });

  const int threads = options.work_threads > 0 ? options.work_threads : std::max(2, limits.cpus);
  state->placement = std::make_unique<Executor>(threads, "wd-place");
  state->work = std::make_unique<Executor>(threads, "wd-work");
  state->loaders = std::make_unique<Executor>(4, "wd-load");

  LoaderServiceDeps deps;
  deps.registry = state->registry.get();
  deps.work = state->work.get();
  deps.placement = state->placement.get();
  if (options.host_memory_limit > 0) {
    state->host_budget = std::make_unique<HostBudget>(options.host_memory_limit);
    state->host_budget->set_observer([metrics](uint64_t used, uint64_t peak) { metrics->OnPushBuffers(used, peak); });
  }
  deps.host_budget = state->host_budget.get();
  deps.loaders = state->loaders.get();
  deps.backend = state->backend.get();
  deps.accounting = state->accounting.get();
  deps.push_hooks.received = [metrics](uint64_t n) { metrics->AddReceived("push", n); };
  deps.path_hooks.received = [metrics](uint64_t n) { metrics->AddReceived("path", n); };
  deps.model_root = options.model_root;
  deps.path_read = options.path_read;
  deps.version = kVersion;
  deps.parse_limits = options.parse_limits;
  state->push_pinning = std::make_unique<PushPinning>(options.pin_pushed_max_streams);
  deps.push_pinning = state->push_pinning.get();
  deps.raw_push_calls = state->raw_push_calls.get();
  deps.push_first_message_timeout = options.push_idle_timeout;
  state->push_silence_timer = std::make_unique<DeadlineTimer>();
  deps.push_silence_timer = state->push_silence_timer.get();
  deps.max_message_bytes = kMaxMessageBytes;
  state->push_watchdog = std::make_unique<StallWatchdog>(options.push_idle_timeout);
  state->shutdown_grace = options.shutdown_grace;
  deps.push_watchdog = state->push_watchdog.get();
  auto peer_channels = PeerChannels::Create(options.peer_tls);
  if (!peer_channels.ok()) return peer_channels.status();
  deps.peer_channels = *peer_channels;
  deps.instance = RandomInstanceId();
  if (!options.peers.empty()) {
    auto directory = PeerDirectory::Create(options.peers, deps.peer_channels, deps.instance);
    if (!directory.ok()) return directory.status();
    state->peer_directory = std::move(*directory);
  }
  deps.peers = state->peer_directory.get();
  state->peer_limiter = std::make_unique<ServeLimiter>(options.peer_serve_bandwidth, options.peer_serve_streams);
  deps.peer_serving.limiter = state->peer_limiter.get();
  if (options.peer_serve_bandwidth > 0) {
    // Under a cap, messages of about 1/16 s of it, so streams take turns finely.
    deps.peer_serving.message_bytes =
        std::clamp<uint64_t>(options.peer_serve_bandwidth / 16, 64 << 10, deps.peer_serving.message_bytes);
  }
  deps.peer_serving.corrupt_tensor = options.test_corrupt_served_tensor;
  deps.peer_serving.on_served = [metrics](const std::string& peer, uint64_t n) { metrics->AddPeerServed(peer, n); };
  deps.peer_serving.on_stream = [metrics](int delta) { metrics->AddPeerServingStreams(delta); };
  deps.peer_received = [metrics](const std::string& peer, uint64_t n) { metrics->AddPeerReceived(peer, n); };
  state->service = std::make_unique<LoaderService>(std::move(deps));

  absl::Status metrics_ok = state->metrics->Serve(options.metrics_address);
  if (!metrics_ok.ok()) return metrics_ok;

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  // Peers ping every 10 s while a stream is open (services/peer/peer_channels.cc);
  // gRPC's default would call that abuse and close the connection with GOAWAY.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  // No grpc::ResourceQuota from --host-memory-limit: in gRPC 1.51 a quota is no bound
  // on receive buffers. Past it gRPC resets streams (RST_STREAM ENHANCE_YOUR_CALM, the
  // client sees RESOURCE_EXHAUSTED) instead of slowing them: with a quota at the limit,
  // every push of HostMemoryE2ETest's eight streams was reset (docs/running.md, "What
  // the host memory limit counts").
  if (options.listen.empty()) return absl::InvalidArgumentError("--listen names no address");
  std::vector<std::string> unix_paths;
  std::vector<std::string> tcp_addresses;
  std::vector<int> tcp_ports;  // filled in by BuildAndStart; reserved, so no pointer moves
  tcp_ports.reserve(options.listen.size());
  for (const std::string& address : options.listen) {
    std::string path = SocketPath(address);
    if (!path.empty()) {
      unix_paths.push_back(path);
      continue;
    }
    WEIGHTD_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials, TcpCredentials(options, address));
    tcp_addresses.push_back(address);
    tcp_ports.push_back(0);
    builder.AddListeningPort(address, credentials, &tcp_ports.back());
  }
  builder.RegisterService(state->service.get());
  state->server = builder.BuildAndStart();
  if (!state->server) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", absl::StrJoin(options.listen, ", ")));
  }
  for (const std::string& address : tcp_addresses) WarnUnauthenticatedTcp(options, address);
  std::vector<uid_t> allowed = options.allowed_uids;
  if (allowed.empty()) allowed = {::geteuid(), 0};
  for (const std::string& path : unix_paths) {
    EnsureParentDir(path);
    UnixListener::RawPushHandler raw_push;
    if (options.raw_unix_push) {
      raw_push = [service = state->service.get()](UniqueFd fd) { service->StartRawPush(std::move(fd)); };
    }
    auto listener = UnixListener::Start(path, options.socket_mode, allowed, state->server.get(), raw_push);
    if (!listener.ok()) {
      state->server->Shutdown();
      return listener.status();
    }
    state->unix_listeners.push_back(std::move(*listener));
  }
  int health_port = 0;
  if (!options.health_address.empty()) {
    // A server with no service of its own: the default health service (and reflection)
    // only, so a kubelet gRPC probe reaches nothing that loads or unloads.
    grpc::ServerBuilder health;
    health.AddListeningPort(options.health_address, grpc::InsecureServerCredentials(), &health_port);
    state->health_server = health.BuildAndStart();
    if (!state->health_server || health_port == 0) {
      for (auto& listener : state->unix_listeners) listener->Shutdown();
      state->server->Shutdown();
      return absl::UnavailableError(absl::StrCat("cannot listen on --health-address ", options.health_address));
    }
  }

  if (!options.handle_socket.empty()) {
    EnsureParentDir(options.handle_socket);
    state->attach_handler = std::make_unique<RegistryAttachHandler>(*state->registry);
    handoff::HandleServerOptions handle_options;
    handle_options.socket_path = options.handle_socket;
    handle_options.mode = options.socket_mode;
    handle_options.allowed_uids = allowed;
    if (options.test_stop_handle_server_after_seconds > 0) {
      handle_options.test_stop_after = absl::Seconds(options.test_stop_handle_server_after_seconds);
    }
    auto handles = handoff::HandleServer::Start(handle_options, state->attach_handler.get());
    if (!handles.ok()) {
      for (auto& listener : state->unix_listeners) listener->Shutdown();
      if (state->health_server) state->health_server->Shutdown();
      state->server->Shutdown();
      return handles.status();
    }
    state->handles = std::move(*handles);
  }
  state->health_monitor = std::thread([s = state.get()] { s->MonitorHealth(); });
  Registry* registry = state->registry.get();
  state->metrics->SetRegistryView([registry] { return registry->List(); },
                                  [registry] { return registry->active_leases(); });
  LogLifecycle("ready",
           {{"listen", absl::StrJoin(options.listen, ",")}, {"handle_socket", options.handle_socket},
            {"metrics_port", state->metrics->port()}, {"health_port", health_port},
            {"tcp_port", tcp_ports.empty() ? 0 : tcp_ports.front()},
            {"backend", state->backend->kind() == v1::DEVICE_KIND_CUDA ? "cuda" : "host"},
            {"devices", state->backend->device_count()}, {"version", kVersion},
            {"cuda", build.cuda ? "true" : "false"}, {"nccl", build.nccl ? "true" : "false"},
            {"memory_limit_bytes", limits.memory_bytes}, {"memory_limit_source", limits.memory_source},
            {"cpus", limits.cpus}, {"cpus_source", limits.cpus_source},
            {"host_memory_limit_bytes", options.host_memory_limit}, {"work_threads", threads},
            {"read_threads", options.path_read.read_threads},
            {"peers", options.peers}, {"peer_serve_bandwidth", options.peer_serve_bandwidth}});
  return std::unique_ptr<Daemon>(new Daemon(std::move(state)));
}

Daemon::Daemon(std::unique_ptr<State> state) : state_(std::move(state)) {}

Daemon::~Daemon() {
  Shutdown();
  // A thread left in a device call may still use any of it: kept, on purpose.
  if (state_->abandoned_threads > 0) (void)state_.release();
}

int Daemon::metrics_port() const { return state_->metrics->port(); }

void Daemon::Shutdown() {
  State& s = *state_;
  if (s.shut_down) return;
  s.shut_down = true;
  LogLifecycle("shutdown", {{"phase", "begin"}});
  {
    std::lock_guard<std::mutex> lock(s.monitor_mu);
    s.monitor_stop = true;
  }
  s.monitor_cv.notify_all();
  if (s.health_monitor.joinable()) s.health_monitor.join();
  s.server->GetHealthCheckService()->SetServingStatus(false);
  if (s.health_server) {
    s.health_server->GetHealthCheckService()->SetServingStatus(false);
    s.health_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  }
  for (auto& listener : s.unix_listeners) listener->Shutdown();
  // Aborting loads first wakes every stream, so the server's shutdown is quick.
  s.registry->Shutdown();
  const size_t raw_left = s.raw_push_calls->Shutdown(std::chrono::steady_clock::now() + std::chrono::seconds(5));
  if (raw_left > 0) LogEvent(LogLevel::kWarning, "shutdown_raw_pushes_left", {{"connections", raw_left}});
  s.server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  // Every load has failed, so the executors' tasks end soon; a thread still in a
  // task at the deadline is in a device call that does not return (a wedged
  // collective or driver call). It is left running: joining it would block
  // forever. Everything it may touch is then kept (never destroyed), and the
  // process ends with it (services/main.cc).
  const auto deadline = std::chrono::steady_clock::now() + s.shutdown_grace;
  const std::pair<const char*, Executor*> executors[] = {
      {"wd-load", s.loaders.get()}, {"wd-work", s.work.get()}, {"wd-place", s.placement.get()}};
  for (const auto& [name, executor] : executors) executor->Stop();
  for (const auto& [name, executor] : executors) {
    const size_t left = executor->JoinUntil(deadline);
    if (left == 0) continue;
    s.abandoned_threads += left;
    LogEvent(LogLevel::kError, "shutdown_abandoned",
             {{"threads", left}, {"executor", name},
              {"reason", absl::StrCat("still in a task ", s.shutdown_grace.count(),
                                      " s after every load was failed: a device call that has not returned; "
                                      "the process exits without waiting for it")}});
  }
  if (s.abandoned_threads == 0) {
    s.loaders.reset();
    s.work.reset();
    s.placement.reset();
  }
  if (s.handles) s.handles->Shutdown();
  s.metrics->SetRegistryView(nullptr, nullptr);  // scrapes go on; the registry goes now
  s.push_watchdog.reset();
  if (s.abandoned_threads == 0) s.registry.reset();
  LogLifecycle("shutdown", {{"phase", "done"}, {"abandoned_threads", s.abandoned_threads}});
}

size_t Daemon::abandoned_threads() const { return state_->abandoned_threads; }

}  // namespace weightd
