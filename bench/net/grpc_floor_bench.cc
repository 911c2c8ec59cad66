// weightd-bench-grpc: what gRPC alone delivers to a receiver that lands every byte
// in DRAM, the floor of a push before the daemon gathers, quantizes or places
// anything. N client streams (client::GrpcShardStream, as weightd-push-gen sends: raw
// 4 MiB messages, each filled by a memcpy from a cache-resident buffer, large freed
// buffers kept resident as in the pushing tools) push to a server in a child
// process over a Unix socket, accepted and handed to gRPC as the daemon does
// (services/server/unix_listener.h). The server takes PushShards raw
// as the daemon does (PushMessage: data read in place from gRPC's slices), keeps
// reading while at most kHeld messages wait (the daemon's queue bound), and a
// thread per stream copies each message's data into its share of landing buffers
// of --land-bytes in all (touched before the clock starts), wrapping. Prints one
// JSON line: GB/s from the first stream opened to the last answer, the client's and
// the server's CPU seconds.
//
//   weightd-bench-grpc --streams=8 --bytes=16000000000 [--land-bytes=4294967296] [--chunk-mib=4]

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <initializer_list>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/process_cpu.h"
#include "bench/net/flag_value.h"
#include "base/resident_buffers.h"
#include "client/cpp/channel.h"
#include "client/cpp/shard_stream.h"
#include "grpcpp/grpcpp.h"
#include "services/server/push_message.h"
#include "services/server/reactor_order.h"
#include "services/server/unix_listener.h"
#include "weightd/v1/loader.grpc.pb.h"

namespace weightd::bench {
namespace {

constexpr size_t kHeld = 3;  // PushShardsReactor::kMaxHeldChunks

// One stream's share of the landing buffers, written from the start again when full.
class Landing {
 public:
  explicit Landing(size_t bytes) : bytes_(bytes, '\0') {}
  void Land(std::string_view piece) {
    while (!piece.empty()) {
      if (at_ == bytes_.size()) at_ = 0;
      const size_t n = std::min(piece.size(), bytes_.size() - at_);
      std::memcpy(bytes_.data() + at_, piece.data(), n);
      at_ += n;
      piece.remove_prefix(n);
    }
  }

 private:
  std::vector<char> bytes_;
  size_t at_ = 0;
};

// Reads one stream: OnReadDone queues the message and starts the next read while
// fewer than kHeld are held; the stream's thread lands them in order.
class LandingReactor : public grpc::ServerReadReactor<grpc::ByteBuffer> {
 public:
  LandingReactor(Landing* landing, grpc::ByteBuffer* response) : landing_(landing), response_(response) {
    reactor_order::Release(this);
    StartRead(&reading_);
    std::thread([this] { Work(); }).detach();
  }

  void OnReadDone(bool ok) override {
    reactor_order::Reaction reaction(this);
    std::lock_guard<std::mutex> lock(mu_);
    if (!ok) {
      ended_ = true;
    } else {
      queue_.push_back(std::move(reading_));
      reading_.Clear();
      if (queue_.size() + 1 < kHeld) {
        reactor_order::Release(this);
        StartRead(&reading_);
      } else {
        paused_ = true;
      }
    }
    cv_.notify_one();
  }

  void OnDone() override {
    reactor_order::Acquire(this);
    delete this;
  }

 private:
  void Work() {
    grpc::Status status;
    for (;;) {
      grpc::ByteBuffer buffer;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return !queue_.empty() || ended_; });
        if (queue_.empty()) break;
        buffer = std::move(queue_.front());
        queue_.pop_front();
      }
      auto message = PushMessage::Decode(buffer);
      if (!message.ok()) {
        status = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::string(message.status().message()));
        break;
      }
      if (landing_ != nullptr) {
        for (std::string_view piece : (*message)->data()) landing_->Land(piece);
      }
      std::lock_guard<std::mutex> lock(mu_);
      if (paused_) {
        paused_ = false;
        reactor_order::Release(this);
        StartRead(&reading_);
      }
    }
    const std::string summary = v1::PushSummary().SerializeAsString();
    grpc::Slice slice(summary.data(), summary.size());
    *response_ = grpc::ByteBuffer(&slice, 1);
    reactor_order::Release(this);
    Finish(status);  // the last touch of `this`: OnDone deletes it
  }

  Landing* const landing_;
  grpc::ByteBuffer* const response_;
  grpc::ByteBuffer reading_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<grpc::ByteBuffer> queue_;
  bool paused_ = false;
  bool ended_ = false;
};

class FloorService final : public v1::Loader::WithRawCallbackMethod_PushShards<v1::Loader::CallbackService> {
 public:
  explicit FloorService(std::vector<Landing>& landings) : landings_(landings) {}
  using v1::Loader::CallbackService::PushShards;  // the typed one: never called
  grpc::ServerReadReactor<grpc::ByteBuffer>* PushShards(grpc::CallbackServerContext*,
                                                        grpc::ByteBuffer* response) override {
    const size_t i = next_.fetch_add(1);
    return new LandingReactor(i < landings_.size() ? &landings_[i] : nullptr, response);
  }

 private:
  std::vector<Landing>& landings_;
  std::atomic<size_t> next_{0};
};

// Integer channel arguments from `--NAME=key=value` (repeatable): gRPC's transport
// settings to try (grpc.http2.max_frame_size, ...), given to the server's builder
// (--server-arg) or each client channel (--client-arg).
using IntArgs = std::vector<std::pair<std::string, int>>;
IntArgs IntArgsFlag(int argc, char** argv, const std::string& name) {
  const std::string prefix = "--" + name + "=";
  IntArgs args;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t eq = arg.rfind('=');
    if (arg.rfind(prefix, 0) != 0 || eq < prefix.size()) continue;
    args.emplace_back(arg.substr(prefix.size(), eq - prefix.size()), std::atoi(arg.c_str() + eq + 1));
  }
  return args;
}

[[noreturn]] void Serve(const std::string& socket_path, uint64_t streams, uint64_t land_bytes, const IntArgs& args) {
  std::vector<Landing> landings;
  if (land_bytes > 0) {
    landings.reserve(streams);
    for (uint64_t s = 0; s < streams; ++s) landings.emplace_back(land_bytes / streams);
  }
  FloorService service(landings);
  grpc::ServerBuilder builder;  // as the daemon's (services/server/daemon.cc)
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.SetMaxSendMessageSize(64 << 20);
  for (const auto& [key, value] : args) builder.AddChannelArgument(key, value);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  auto listener = server == nullptr ? absl::UnavailableError("no server")
                                    : UnixListener::Start(socket_path, 0600, {::geteuid()}, server.get());
  if (!listener.ok()) {
    std::fprintf(stderr, "weightd-bench-grpc: cannot serve on %s: %s\n", socket_path.c_str(),
                 listener.status().ToString().c_str());
    std::_Exit(1);
  }
  server->Wait();  // until the parent kills the process
  std::_Exit(0);
}

// Fields of /proc/PID/stat (numbered as proc(5) numbers them) summed.
uint64_t ChildStatSum(pid_t pid, std::initializer_list<int> wanted) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t close = text.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(text.substr(close + 2));
  std::string field;
  uint64_t sum = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (std::find(wanted.begin(), wanted.end(), i) != wanted.end()) sum += std::strtoull(field.c_str(), nullptr, 10);
  }
  return sum;
}

double ChildCpuSeconds(pid_t pid) {  // utime + stime
  return static_cast<double>(ChildStatSum(pid, {14, 15})) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

uint64_t ChildMinorFaults(pid_t pid) { return ChildStatSum(pid, {10}); }

int Main(int argc, char** argv) {
  const uint64_t streams = std::max<uint64_t>(1, FlagValue(argc, argv, "streams", 1));
  const uint64_t bytes = FlagValue(argc, argv, "bytes", uint64_t{4} << 30);
  const uint64_t land_bytes = FlagValue(argc, argv, "land-bytes", uint64_t{4} << 30);
  const size_t chunk_bytes = FlagValue(argc, argv, "chunk-mib", 4) << 20;
  char dir_template[] = "/tmp/weightd-bench-grpc.XXXXXX";
  if (mkdtemp(dir_template) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  const std::string socket_path = std::string(dir_template) + "/g.sock";
  const pid_t server = fork();  // before this process touches gRPC
  if (server < 0) {
    std::perror("fork");
    return 1;
  }
  if (server == 0) Serve(socket_path, streams, land_bytes, IntArgsFlag(argc, argv, "server-arg"));
  const IntArgs client_args = IntArgsFlag(argc, argv, "client-arg");
  KeepLargeBuffersResident();  // as the pushing tools do (bench/gen/gen_flags.cc)
  struct stat st {};
  for (int i = 0; i < 600 && stat(socket_path.c_str(), &st) != 0; ++i) usleep(50000);
  const double server_cpu_before = ChildCpuSeconds(server);
  const uint64_t server_faults_before = ChildMinorFaults(server);
  const double client_cpu_before = ProcessCpuSeconds();

  std::mutex mu;
  std::string error;
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (uint64_t s = 0; s < streams; ++s) {
    const uint64_t share = bytes / streams + (s < bytes % streams ? 1 : 0);
    threads.emplace_back([&, s, share] {
      const std::vector<uint8_t> pattern(chunk_bytes, static_cast<uint8_t>(s + 1));
      std::shared_ptr<grpc::Channel> channel;
      if (client_args.empty()) {
        channel = client::MakeChannel("unix:" + socket_path, /*own_connection=*/true);
      } else {  // the pushing tools' channel (client/cpp/channel.cc) with the arguments to try
        grpc::ChannelArguments args = client::ChannelArgumentsFor(client::TlsOptions{});
        args.SetInt("weightd.channel_id", static_cast<int>(s));
        args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
        for (const auto& [key, value] : client_args) args.SetInt(key, value);
        channel = grpc::CreateCustomChannel("unix:" + socket_path, grpc::InsecureChannelCredentials(), args);
      }
      client::GrpcShardStream stream(channel, "floor",
                                     "shard-" + std::to_string(s), share);
      uint64_t left = share;
      while (left > 0 && stream.Send(chunk_bytes, [&](uint8_t* buffer, size_t capacity) {
        const size_t n = std::min<uint64_t>(left, capacity);
        std::memcpy(buffer, pattern.data(), n);
        left -= n;
        return n;
      })) {
      }
      absl::Status status = stream.Finish().status();
      if (left > 0 && status.ok()) status = absl::InternalError("the stream broke before its last byte");
      std::lock_guard<std::mutex> lock(mu);
      if (!status.ok() && error.empty()) error = status.ToString();
    });
  }
  for (std::thread& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double server_cpu = ChildCpuSeconds(server) - server_cpu_before;
  const uint64_t server_faults = ChildMinorFaults(server) - server_faults_before;
  kill(server, SIGKILL);
  waitpid(server, nullptr, 0);
  unlink(socket_path.c_str());
  rmdir(dir_template);
  if (!error.empty()) {
    std::fprintf(stderr, "weightd-bench-grpc: %s\n", error.c_str());
    return 1;
  }
  std::printf("{\"tool\":\"weightd-bench-grpc\",\"streams\":%llu,\"bytes\":%llu,\"land_bytes\":%llu,"
              "\"seconds\":%.4f,\"gbps\":%.3f,\"client_cpu_seconds\":%.2f,\"server_cpu_seconds\":%.2f,"
              "\"server_minor_faults\":%llu}\n",
              static_cast<unsigned long long>(streams), static_cast<unsigned long long>(bytes),
              static_cast<unsigned long long>(land_bytes), seconds, static_cast<double>(bytes) / seconds / 1e9,
              ProcessCpuSeconds() - client_cpu_before, server_cpu, static_cast<unsigned long long>(server_faults));
  return 0;
}

}  // namespace
}  // namespace weightd::bench

int main(int argc, char** argv) { return weightd::bench::Main(argc, argv); }
