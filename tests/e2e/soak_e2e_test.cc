// A bounded soak (WEIGHTD_SOAK_SECONDS, default 45): threads push, load, attach,
// unload and drop connections mid-shard at once against one daemon. It must end
// with the device memory it began with and the descriptors it began with, and it
// prints what it did.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "client/cpp/lease.h"
#include "gtest/gtest.h"
#include "tests/e2e/daemon_process.h"
#include "tests/e2e/push_stream.h"

namespace weightd::testing {
namespace {

class Tally {
 public:
  void Add(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu_);
    ++counts_[what];
  }
  void Print() {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [what, n] : counts_) std::printf("soak: %-40s %d\n", what.c_str(), n);
  }
  int Get(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu_);
    return counts_[what];
  }

 private:
  std::mutex mu_;
  std::map<std::string, int> counts_;
};

// One round of one worker: a random operation, its outcome counted by name.
void Round(const DaemonProcess& daemon, int worker, std::mt19937& rng, Tally& tally) {
  const std::string own = "w" + std::to_string(worker);
  switch (rng() % 5) {
    case 0: {  // a whole push, a lease on it, then an unload
      PushLoad load(daemon, own, {"model.safetensors"});
      PushWhole(load, "model.safetensors", OneTensorShard("a.weight", 4096));
      grpc::Status s = load.Finish();
      tally.Add(std::string("push load: ") + (s.ok() ? "OK" : "error " + std::to_string(s.error_code())));
      auto lease = client::Lease::Attach(daemon.handle_socket(), own, 0);
      tally.Add(std::string("attach own: ") + (lease.ok() ? "OK" : absl::StatusCodeToString(lease.status().code())));
      if (lease.ok()) lease->Release();
      CommandResult r = daemon.Ctl({"unload", own, "--force"});
      tally.Add(std::string("unload own: ") + (r.exit_code == 0 ? "OK" : "refused"));
      break;
    }
    case 1: {  // the client vanishes mid-shard
      const std::string file = OneTensorShard("a.weight", 1 << 15);
      PushLoad load(daemon, own + "-cut", {"model.safetensors"});
      ShardStream stream(load, "model.safetensors", file.size());
      stream.Write(file.substr(0, file.size() / 3));
      stream.Cancel();
      stream.status();
      grpc::Status s = load.Finish();
      tally.Add("disconnect mid-shard: " + std::string(s.ok() ? "OK (unexpected)" : "load failed"));
      break;
    }
    case 2: {  // the shared model: load or attach to its load, then a lease
      CommandResult r = daemon.Ctl({"load", "shared", "--path=tiny"});
      tally.Add(std::string("load shared: ") + (r.exit_code == 0 ? "OK" : "refused"));
      auto lease = client::Lease::Attach(daemon.handle_socket(), "shared", 0);
      tally.Add(std::string("attach shared: ") + (lease.ok() ? "OK" : absl::StatusCodeToString(lease.status().code())));
      break;
    }
    case 3: {  // forced unload of the shared model, racing everything above
      CommandResult r = daemon.Ctl({"unload", "shared", "--force"});
      tally.Add(std::string("force unload shared: ") + (r.exit_code == 0 ? "OK" : "not loaded"));
      break;
    }
    default: {  // a push that never sends its shard, then gives up
      PushLoad load(daemon, own + "-abandoned", {"model.safetensors"});
      CommandResult r = daemon.Ctl({"unload", own + "-abandoned", "--force"});
      tally.Add(std::string("abandoned push, force unload: ") + (r.exit_code == 0 ? "OK" : "refused"));
      load.Finish();
      break;
    }
  }
}

TEST(SoakE2ETest, ConcurrentTrafficAndFaultsLeakNoBytesAndNoDescriptors) {
  const char* env = std::getenv("WEIGHTD_SOAK_SECONDS");
  const int seconds = env != nullptr ? std::atoi(env) : 45;
  DaemonProcess daemon;
  CommandResult gen = RunCommand({BinPath("weightd-gen"), "--preset=tiny", "--out=" + daemon.model_root() + "/tiny",
                                  "--shards=2", "--dtype=bf16"});
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  daemon.Start({"--push-idle-timeout-seconds=2"});
  // Warm up once so that lazily opened descriptors (thread pools, epoll) exist before counting.
  ASSERT_EQ(daemon.Ctl({"load", "warm", "--path=tiny"}).exit_code, 0);
  ASSERT_EQ(daemon.Ctl({"unload", "warm"}).exit_code, 0);
  const double used_before = daemon.UsedBytes();
  const int fds_before = daemon.OpenFds();
  ASSERT_GT(fds_before, 0);

  Tally tally;
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  std::vector<std::thread> workers;
  for (int w = 0; w < 4; ++w) {
    workers.emplace_back([&, w] {
      std::mt19937 rng(1234 + w);
      while (std::chrono::steady_clock::now() < end) {
        Round(daemon, w, rng, tally);
        tally.Add("rounds");
      }
    });
  }
  for (auto& t : workers) t.join();
  daemon.Ctl({"unload", "shared", "--force"});  // whether or not a worker already did

  // Connections close asynchronously: wait (bounded) for the daemon to settle.
  double used_after = -1;
  int fds_after = -1;
  for (int i = 0; i < 100; ++i) {
    used_after = daemon.UsedBytes();
    fds_after = daemon.OpenFds();
    if (used_after == used_before && fds_after <= fds_before) break;
    ::usleep(100000);
  }
  tally.Print();
  std::printf("soak: device bytes used before %.0f after %.0f; daemon fds before %d after %d\n", used_before,
              used_after, fds_before, fds_after);
  EXPECT_EQ(used_after, used_before);
  EXPECT_LE(fds_after, fds_before);
  EXPECT_GT(tally.Get("push load: OK"), 0);
  EXPECT_GT(tally.Get("disconnect mid-shard: load failed"), 0);
  EXPECT_EQ(tally.Get("disconnect mid-shard: OK (unexpected)"), 0);
  CommandResult list = daemon.Ctl({"list"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_EQ(daemon.Stop(), 0);
}

}  // namespace
}  // namespace weightd::testing
