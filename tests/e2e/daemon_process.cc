#include "tests/e2e/daemon_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/e2e/checkpoint_files.h"

namespace weightd::testing {
namespace {

std::string ReadAll(int fd) {
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

pid_t Spawn(const std::vector<std::string>& argv, int out_fd, int err_fd) {
  pid_t pid = ::fork();
  if (pid == 0) {
    if (out_fd >= 0) ::dup2(out_fd, STDOUT_FILENO);
    if (err_fd >= 0) ::dup2(err_fd, STDERR_FILENO);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  return pid;
}

int ExitCode(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

int WaitStatus(pid_t pid, long* peak_rss_bytes = nullptr) {
  int status = 0;
  struct rusage usage {};
  while (::wait4(pid, &status, 0, &usage) < 0 && errno == EINTR) {
  }
  if (peak_rss_bytes != nullptr) *peak_rss_bytes = usage.ru_maxrss * 1024;  // Linux reports KiB
  return ExitCode(status);
}

// WaitStatus for at most `limit`; nullopt (the process still running) after it.
std::optional<int> WaitStatusWithin(pid_t pid, std::chrono::milliseconds limit, long* peak_rss_bytes = nullptr) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    int status = 0;
    struct rusage usage {};
    pid_t done = ::wait4(pid, &status, WNOHANG, &usage);
    if (done == pid) {
      if (peak_rss_bytes != nullptr) *peak_rss_bytes = usage.ru_maxrss * 1024;
      return ExitCode(status);
    }
    if (done < 0 && errno != EINTR) return -1;
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// The ports of the "ready" record, in either log format; leaves them alone on any other line.
void ReadyPorts(const std::string& line, int* metrics_port, int* health_port, int* tcp_port) {
  auto json = nlohmann::json::parse(line, nullptr, false);
  if (!json.is_discarded()) {
    if (json.value("event", "") != "ready") return;
    *metrics_port = json.value("metrics_port", 0);
    *health_port = json.value("health_port", 0);
    *tcp_port = json.value("tcp_port", 0);
    return;
  }
  if (line.find(" info ready ") == std::string::npos) return;
  auto field = [&line](const std::string& key) {
    size_t at = line.find(" " + key + "=");
    return at == std::string::npos ? 0 : std::atoi(line.c_str() + at + key.size() + 2);
  };
  *metrics_port = field("metrics_port");
  *health_port = field("health_port");
  *tcp_port = field("tcp_port");
}

}  // namespace

// WEIGHTD_BIN_DIR in the environment overrides the build's own (binaries carried
// to another machine).
std::string BinPath(const std::string& name) {
  const char* dir = std::getenv("WEIGHTD_BIN_DIR");
  return std::string(dir != nullptr ? dir : WEIGHTD_BIN_DIR) + "/" + name;
}

CommandResult RunCommand(const std::vector<std::string>& argv) {
  return RunCommand(argv, std::chrono::milliseconds::max());
}

CommandResult RunCommand(const std::vector<std::string>& argv, std::chrono::milliseconds limit) {
  char out_path[] = "/tmp/weightd-cmd-out-XXXXXX";
  char err_path[] = "/tmp/weightd-cmd-err-XXXXXX";
  int out_fd = ::mkstemp(out_path), err_fd = ::mkstemp(err_path);
  pid_t pid = Spawn(argv, out_fd, err_fd);
  CommandResult result;
  if (limit == std::chrono::milliseconds::max()) {
    result.exit_code = WaitStatus(pid, &result.peak_rss_bytes);
  } else {
    std::optional<int> code = WaitStatusWithin(pid, limit, &result.peak_rss_bytes);
    if (!code) {
      ::kill(pid, SIGKILL);
      result.timed_out = true;
      code = WaitStatus(pid, &result.peak_rss_bytes);
    }
    result.exit_code = *code;
  }
  ::lseek(out_fd, 0, SEEK_SET);
  ::lseek(err_fd, 0, SEEK_SET);
  result.out = ReadAll(out_fd);
  result.err = ReadAll(err_fd);
  ::close(out_fd);
  ::close(err_fd);
  ::unlink(out_path);
  ::unlink(err_path);
  return result;
}

CommandResult RunInTerminal(const std::vector<std::string>& argv) {
  int controller = -1, terminal = -1;
  if (::openpty(&controller, &terminal, nullptr, nullptr, nullptr) != 0) throw std::runtime_error("openpty");
  pid_t pid = Spawn(argv, terminal, terminal);
  ::close(terminal);
  CommandResult result;
  char buf[4096];
  ssize_t n;
  // Reading ends with EIO once the child and every copy of the terminal side are gone.
  while ((n = ::read(controller, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) result.out.append(buf, static_cast<size_t>(n));
  }
  ::close(controller);
  result.exit_code = WaitStatus(pid, &result.peak_rss_bytes);
  return result;
}

DaemonProcess::DaemonProcess() {
  char dir[] = "/tmp/weightd-e2e-XXXXXX";
  if (::mkdtemp(dir) == nullptr) throw std::runtime_error("mkdtemp");
  dir_ = dir;
  std::filesystem::create_directories(model_root());
}

DaemonProcess::~DaemonProcess() {
  Stop();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

void DaemonProcess::Start(const std::vector<std::string>& extra_flags) {
  std::vector<std::string> argv = {BinPath("weightd"),
                                   "--listen=" + grpc_address(),
                                   "--handle-socket=" + handle_socket(),
                                   "--metrics-address=127.0.0.1:0",
                                   "--backend=host",
                                   "--model-root=" + model_root(),
                                   "--log-format=json"};
  argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
  metrics_port_ = 0;
  health_port_ = 0;
  tcp_port_ = 0;
  {
    std::lock_guard<std::mutex> lock(log_mu_);
    log_.clear();
  }
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  pid_ = Spawn(argv, -1, pipe_fds[1]);
  ::close(pipe_fds[1]);
  stderr_fd_ = pipe_fds[0];
  drainer_ = std::thread([this, fd = stderr_fd_] {
    char buf[65536];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
      if (n <= 0) continue;
      std::lock_guard<std::mutex> lock(log_mu_);
      log_.append(buf, static_cast<size_t>(n));
    }
  });
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  size_t scanned = 0;
  while (std::chrono::steady_clock::now() < deadline && metrics_port_ == 0) {
    const std::string text = log();
    size_t line_end;
    while ((line_end = text.find('\n', scanned)) != std::string::npos && metrics_port_ == 0) {
      ReadyPorts(text.substr(scanned, line_end - scanned), &metrics_port_, &health_port_, &tcp_port_);
      scanned = line_end + 1;
    }
    if (metrics_port_ == 0) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {  // exited before it was ready
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  if (metrics_port_ == 0) {
    Stop();
    throw std::runtime_error("weightd did not become ready: " + log());
  }
}

nlohmann::json DaemonProcess::ReadyRecord() const {
  std::istringstream lines(log());
  for (std::string line; std::getline(lines, line);) {
    auto json = nlohmann::json::parse(line, nullptr, false);
    if (!json.is_discarded() && json.is_object() && json.value("event", "") == "ready") return json;
  }
  return nullptr;
}

int DaemonProcess::Stop() { return *StopWithin(std::chrono::milliseconds::max()); }

std::optional<int> DaemonProcess::StopWithin(std::chrono::milliseconds limit) {
  std::optional<int> status = -1;
  const bool running = pid_ >= 0;
  if (running) {
    ::kill(pid_, SIGTERM);
    if (limit == std::chrono::milliseconds::max()) {
      status = WaitStatus(pid_);
    } else {
      status = WaitStatusWithin(pid_, limit);
      if (!status) {
        ::kill(pid_, SIGKILL);
        WaitStatus(pid_);
      }
    }
    pid_ = -1;
  }
  if (drainer_.joinable()) drainer_.join();  // EOF: the daemon's end of the pipe is closed
  if (stderr_fd_ >= 0) {
    ::close(stderr_fd_);
    stderr_fd_ = -1;
  }
  // A sanitizer report in the daemon fails the test that ran it, even where the
  // test never looks at the exit status (most let the destructor stop the daemon).
  if (running) {
    const std::string text = log();
    for (const char* report : {"WARNING: ThreadSanitizer:", "ERROR: AddressSanitizer:", "ERROR: LeakSanitizer:",
                               "runtime error:"}) {
      if (text.find(report) != std::string::npos) ADD_FAILURE() << "weightd reported \"" << report << "\":\n" << text;
    }
  }
  return status;
}

std::string DaemonProcess::log() const {
  std::lock_guard<std::mutex> lock(log_mu_);
  return log_;
}

CommandResult DaemonProcess::GenerateTiny(const std::string& name, const std::vector<std::string>& flags) const {
  std::vector<std::string> argv = {BinPath("weightd-gen"), "--preset=tiny", "--out=" + model_root() + "/" + name};
  argv.insert(argv.end(), flags.begin(), flags.end());
  return RunCommand(argv);
}

CommandResult DaemonProcess::Ctl(std::vector<std::string> args) const {
  return Ctl(std::move(args), std::chrono::milliseconds::max());
}

CommandResult DaemonProcess::Ctl(std::vector<std::string> args, std::chrono::milliseconds limit) const {
  std::vector<std::string> argv = {BinPath("weightctl"), "--address=" + grpc_address(),
                                   "--handle-socket=" + handle_socket(), "--progress=false"};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, limit);
}

std::string DaemonProcess::Metrics() const {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(metrics_port_));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    ::close(fd);
    return "";
  }
  std::string request = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
  (void)!::write(fd, request.data(), request.size());
  std::string response = ReadAll(fd);
  ::close(fd);
  size_t body = response.find("\r\n\r\n");
  return body == std::string::npos ? "" : response.substr(body + 4);
}

double DaemonProcess::PeakResidentBytes() const {
  std::string status = ReadFile("/proc/" + std::to_string(pid_) + "/status");
  size_t at = status.find("VmHWM:");
  return at == std::string::npos ? 0 : std::stod(status.substr(at + 6)) * 1024;
}

int DaemonProcess::OpenFds() const {
  int n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid_) + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

double DaemonProcess::Metric(const std::string& sample) const {
  std::istringstream lines(Metrics());
  std::string line;
  while (std::getline(lines, line)) {
    if (line.size() > sample.size() && line.compare(0, sample.size(), sample) == 0 && line[sample.size()] == ' ') {
      return std::strtod(line.c_str() + sample.size() + 1, nullptr);
    }
  }
  return -1;
}

}  // namespace weightd::testing
