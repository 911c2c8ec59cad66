// Test harness: the real weightd binary started on temporary Unix sockets, and
// the real weightctl run against it, as an operator would.
// Not thread-safe: one harness per test.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace weightd::testing {

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
  long peak_rss_bytes = 0;  // the process's maximum resident set size (getrusage's ru_maxrss)
};

// Runs argv[0] (a path) with the arguments, capturing both streams.
CommandResult RunCommand(const std::vector<std::string>& argv);
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
  // 128 + signal).
  int Stop();

  // weightctl with --address and --handle-socket of this daemon.
  CommandResult Ctl(std::vector<std::string> args) const;
  // GET /metrics of this daemon.
  std::string Metrics() const;
  // The value of one sample line ("name{labels}") of the metrics, or -1 if absent.
  double Metric(const std::string& sample) const;

  const std::string& dir() const { return dir_; }
  std::string model_root() const { return dir_ + "/models"; }
  std::string grpc_address() const { return "unix:" + dir_ + "/weightd.sock"; }
  std::string handle_socket() const { return dir_ + "/handles.sock"; }
  const std::string& log() const { return log_; }

 private:
  std::string dir_;
  pid_t pid_ = -1;
  int stderr_fd_ = -1;
  std::string log_;
  int metrics_port_ = 0;
};

std::string BinPath(const std::string& name);

}  // namespace weightd::testing
