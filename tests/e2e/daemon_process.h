// Test harness: the real weightd binary started on temporary Unix sockets, and
// the real weightctl run against it, as an operator would.
// Start and Stop from the test's thread; Ctl, Metrics and log from any thread
// (a background thread reads the daemon's stderr, so it never blocks on the pipe).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "nlohmann/json.hpp"

namespace weightd::testing {

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
  long peak_rss_bytes = 0;  // the process's maximum resident set size (getrusage's ru_maxrss)
  bool timed_out = false;   // killed (SIGKILL) at the end of its time limit
};

// Runs argv[0] (a path) with the arguments, capturing both streams.
CommandResult RunCommand(const std::vector<std::string>& argv);
// As RunCommand, but a process still running after `limit` is killed (SIGKILL):
// a test of something that must complete fails instead of hanging.
CommandResult RunCommand(const std::vector<std::string>& argv, std::chrono::milliseconds limit);
// As RunCommand, with stdout and stderr on one pseudo-terminal (both in `out`),
// as an operator at a terminal sees them.
CommandResult RunInTerminal(const std::vector<std::string>& argv);

class DaemonProcess {
 public:
  // A fresh temporary directory holding the sockets and `models/` (the model root).
  DaemonProcess();
  ~DaemonProcess();  // SIGTERM, wait, remove the directory

  // Starts weightd with the given extra flags; waits for its "ready" log line.
  void Start(const std::vector<std::string>& extra_flags = {});
  // SIGTERM and wait; returns the exit status (as from waitpid's WEXITSTATUS, or
  // 128 + signal). A sanitizer report in the daemon's stderr fails the current test.
  int Stop();
  // As Stop, but a daemon still running `limit` after SIGTERM is killed (SIGKILL)
  // and nullopt returned.
  std::optional<int> StopWithin(std::chrono::milliseconds limit);

  // weightd-gen --preset=tiny into model_root()/name, with the extra flags.
  CommandResult GenerateTiny(const std::string& name, const std::vector<std::string>& flags) const;
  // weightctl with --address and --handle-socket of this daemon.
  CommandResult Ctl(std::vector<std::string> args) const;
  // As Ctl, killed after `limit` (RunCommand's time limit).
  CommandResult Ctl(std::vector<std::string> args, std::chrono::milliseconds limit) const;
  // GET /metrics of this daemon.
  std::string Metrics() const;
  // The value of one sample line ("name{labels}") of the metrics, or -1 if absent.
  double Metric(const std::string& sample) const;

  const std::string& dir() const { return dir_; }
  std::string model_root() const { return dir_ + "/models"; }
  std::string grpc_address() const { return "unix:" + dir_ + "/weightd.sock"; }
  std::string handle_socket() const { return dir_ + "/handles.sock"; }
  // Everything the daemon has written to stderr so far (all of it after Stop).
  std::string log() const;
  // The "ready" record of the JSON log (the default of Start); null before it.
  nlohmann::json ReadyRecord() const;
  // The --health-address port from the "ready" line; 0 without that flag.
  int health_port() const { return health_port_; }
  // The first TCP listener's port from the "ready" line (a --listen of host:0
  // gets a free one); 0 without one.
  int tcp_port() const { return tcp_port_; }
  pid_t pid() const { return pid_; }
  // Open descriptors of the daemon process (/proc/<pid>/fd).
  int OpenFds() const;
  // Peak resident bytes of the daemon process (VmHWM), 0 if unknown.
  double PeakResidentBytes() const;
  // Device 0's weightd_device_memory_used_bytes.
  double UsedBytes() const { return Metric("weightd_device_memory_used_bytes{device=\"0\"}"); }

 private:
  std::string dir_;
  pid_t pid_ = -1;
  int stderr_fd_ = -1;
  std::thread drainer_;  // reads stderr_fd_ into log_ until the daemon closes it
  mutable std::mutex log_mu_;
  std::string log_;
  int metrics_port_ = 0;
  int health_port_ = 0;
  int tcp_port_ = 0;
};

std::string BinPath(const std::string& name);

}  // namespace weightd::testing
