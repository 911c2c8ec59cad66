// Faults against the real daemon: clients that vanish, shards that never come,
// signals mid-load, lease holders killed, races between unload and attach, and
// crowds. After each, the daemon serves the next request and device 0's used
// bytes are back where they were.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "client/cpp/lease.h"
#include "gtest/gtest.h"
#include "tests/e2e/daemon_process.h"
#include "tests/e2e/push_stream.h"

namespace weightd::testing {
namespace {

class FaultE2ETest : public ::testing::Test {
 protected:
  void StartDaemon(const std::vector<std::string>& flags = {}) {
    CommandResult gen = RunCommand({BinPath("weightd-gen"), "--preset=tiny", "--out=" + daemon_.model_root() + "/tiny",
                                    "--shards=2", "--dtype=bf16"});
    ASSERT_EQ(gen.exit_code, 0) << gen.err;
    daemon_.Start(flags);
  }

  // The daemon still loads a model, and frees it, and ends where it started.
  void ExpectServesAndReturnsTo(double used) {
    CommandResult load = daemon_.Ctl({"load", "after-fault", "--path=tiny"});
    EXPECT_EQ(load.exit_code, 0) << load.err;
    EXPECT_GT(daemon_.UsedBytes(), used);
    EXPECT_EQ(daemon_.Ctl({"unload", "after-fault"}).exit_code, 0);
    EXPECT_EQ(daemon_.UsedBytes(), used);
  }

  // Unload, retried while the daemon has not yet seen a closed lease (it notices
  // asynchronously); bounded, so a lease that never ends fails the test.
  CommandResult UnloadWhenLeasesEnd(const std::string& model) {
    CommandResult result;
    for (int i = 0; i < 250; ++i) {
      result = daemon_.Ctl({"unload", model});
      if (result.exit_code == 0 || result.err.find("lease") == std::string::npos) break;
      ::usleep(20000);
    }
    return result;
  }

  DaemonProcess daemon_;
};

TEST_F(FaultE2ETest, ClientDisconnectingMidShardFailsTheLoadAndFreesItsMemory) {
  StartDaemon();
  const std::string file = OneTensorShard("a.weight", 1 << 16);
  PushLoad load(daemon_, "cut", {"model.safetensors"});
  {
    ShardStream stream(load, "model.safetensors", file.size());
    const std::string half = file.substr(0, file.size() / 2);
    ASSERT_TRUE(stream.Write(half));
    // Cut only once the daemon holds the bytes: a stream cancelled before its first
    // message arrives never names its model, and that load waits for the push idle
    // timeout instead (AMissingPushedShardTimesOutNamingIt).
    const std::string received = "weightd_received_bytes_total{source=\"push\"}";
    for (int i = 0; i < 500 && daemon_.Metric(received) < static_cast<double>(half.size()); ++i) ::usleep(10000);
    ASSERT_GE(daemon_.Metric(received), static_cast<double>(half.size()));
    stream.Cancel();
    stream.status();
  }
  grpc::Status status = load.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS) << status.error_message();
  EXPECT_NE(status.error_message().find("model.safetensors"), std::string::npos) << status.error_message();
  ExpectServesAndReturnsTo(0);
}

// Many small messages, then the client goes away: the daemon has reads queued
// behind its processing when the cancel lands. The load fails and frees its memory.
TEST_F(FaultE2ETest, ClientCancellingWithReadsQueuedFailsTheLoadAndFreesItsMemory) {
  StartDaemon();
  const std::string file = OneTensorShard("a.weight", 4 << 20);  // 16 MiB of data
  PushLoad load(daemon_, "cut-queued", {"model.safetensors"});
  {
    ShardStream stream(load, "model.safetensors", file.size());
    constexpr size_t kPiece = 256 << 10;
    for (size_t at = 0; at < file.size() / 2; at += kPiece) ASSERT_TRUE(stream.Write(file.substr(at, kPiece)));
    stream.Cancel();
    stream.status();
  }
  grpc::Status status = load.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS) << status.error_message();
  EXPECT_NE(status.error_message().find("model.safetensors"), std::string::npos) << status.error_message();
  ExpectServesAndReturnsTo(0);
}

TEST_F(FaultE2ETest, AMissingPushedShardTimesOutNamingIt) {
  StartDaemon({"--push-idle-timeout-seconds=1"});
  PushLoad load(daemon_, "half", {"a.safetensors", "b.safetensors"});
  EXPECT_TRUE(PushWhole(load, "a.safetensors", OneTensorShard("a.weight", 64)).error_code() !=
              grpc::StatusCode::INVALID_ARGUMENT);
  grpc::Status status = load.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
  EXPECT_NE(status.error_message().find("shard 'b.safetensors' (no stream yet)"), std::string::npos)
      << status.error_message();
  ExpectServesAndReturnsTo(0);
}

// A gRPC PushShards call that sends nothing holds no reactor forever: once
// --push-idle-timeout-seconds have passed it is answered DEADLINE_EXCEEDED,
// naming the shard its metadata names (the raw connection's twin is in
// raw_push_e2e_test.cc). Its load, which waits for that shard, fails on its own.
TEST_F(FaultE2ETest, APushStreamThatSendsNothingIsAnsweredAfterTheIdleTimeout) {
  StartDaemon({"--push-idle-timeout-seconds=1"});
  PushLoad load(daemon_, "silent", {"model.safetensors"});
  ShardStream stream(load, "model.safetensors", 64);
  const grpc::Status status = stream.status();  // no message, no WritesDone: only the daemon can end it
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
  EXPECT_NE(status.error_message().find("shard 'model.safetensors': PushShards stream received nothing in its "
                                        "first 1 s (--push-idle-timeout-seconds)"),
            std::string::npos)
      << status.error_message();
  EXPECT_EQ(load.Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  ExpectServesAndReturnsTo(0);
}

TEST_F(FaultE2ETest, AStalledStreamTimesOutAndFreesThePlannedMemory) {
  StartDaemon({"--push-idle-timeout-seconds=1"});
  const std::string file = OneTensorShard("a.weight", 1 << 16);
  PushLoad load(daemon_, "stalled", {"model.safetensors"});
  ShardStream stream(load, "model.safetensors", file.size());
  ASSERT_TRUE(stream.Write(file.substr(0, 4096)));  // header and a little data, then nothing
  grpc::Status status = load.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
  EXPECT_NE(status.error_message().find("shard 'model.safetensors' (not finished)"), std::string::npos)
      << status.error_message();
  stream.Cancel();
  ExpectServesAndReturnsTo(0);
}

TEST_F(FaultE2ETest, SigtermMidLoadExitsZeroAndAbortsTheLoad) {
  StartDaemon();
  const std::string file = OneTensorShard("a.weight", 1 << 16);
  PushLoad load(daemon_, "interrupted", {"model.safetensors"});
  ShardStream stream(load, "model.safetensors", file.size());
  ASSERT_TRUE(stream.Write(file.substr(0, 4096)));
  EXPECT_EQ(daemon_.Stop(), 0) << daemon_.log();
  EXPECT_EQ(load.Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(daemon_.log().find("weightd is shutting down"), std::string::npos) << daemon_.log();
  EXPECT_NE(daemon_.log().find("\"phase\":\"done\""), std::string::npos) << daemon_.log();
}

TEST_F(FaultE2ETest, SigkillOfALeaseHolderEndsItsLeaseAndUnloadProceeds) {
  StartDaemon();
  ASSERT_EQ(daemon_.Ctl({"load", "m", "--path=tiny"}).exit_code, 0);
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t holder = ::fork();
  if (holder == 0) {
    auto lease = client::Lease::Attach(daemon_.handle_socket(), "m", 0);
    char ok = lease.ok() ? 1 : 0;
    (void)!::write(ready[1], &ok, 1);
    for (;;) ::pause();
  }
  char ok = 0;
  ASSERT_EQ(::read(ready[0], &ok, 1), 1);
  ASSERT_EQ(ok, 1);
  CommandResult refused = daemon_.Ctl({"unload", "m"});
  EXPECT_NE(refused.err.find("FAILED_PRECONDITION"), std::string::npos) << refused.err;
  ::kill(holder, SIGKILL);
  ::waitpid(holder, nullptr, 0);
  CommandResult unloaded = UnloadWhenLeasesEnd("m");
  EXPECT_EQ(unloaded.exit_code, 0) << unloaded.err;
  EXPECT_EQ(daemon_.UsedBytes(), 0);
  ::close(ready[0]);
  ::close(ready[1]);
  ExpectServesAndReturnsTo(0);
}

TEST_F(FaultE2ETest, ForcedUnloadRacingAttachesNeverHandsOutADeadHandle) {
  StartDaemon();
  for (int round = 0; round < 5; ++round) {
    ASSERT_EQ(daemon_.Ctl({"load", "m", "--path=tiny"}).exit_code, 0);
    std::atomic<int> granted{0}, refused{0}, other{0};
    std::vector<std::thread> attachers;
    for (int t = 0; t < 4; ++t) {
      attachers.emplace_back([&] {
        for (int i = 0; i < 20; ++i) {
          auto lease = client::Lease::Attach(daemon_.handle_socket(), "m", 0);
          if (lease.ok()) {
            // A granted handle is a live memfd of the model's size, whatever happened since.
            off_t size = ::lseek(lease->fds()[0].get(), 0, SEEK_END);
            size == static_cast<off_t>(lease->manifest().allocations(0).size()) ? ++granted : ++other;
          } else if (lease.status().code() == absl::StatusCode::kNotFound) {
            ++refused;
          } else {
            ++other;
          }
        }
      });
    }
    CommandResult unload = daemon_.Ctl({"unload", "m", "--force"});
    for (auto& t : attachers) t.join();
    EXPECT_EQ(unload.exit_code, 0) << unload.err;
    EXPECT_EQ(other.load(), 0);
    EXPECT_EQ(granted + refused, 80);
  }
  // Leases granted before the unload keep their memory until the daemon sees them end.
  for (int i = 0; i < 500 && daemon_.UsedBytes() != 0; ++i) ::usleep(10000);
  EXPECT_EQ(daemon_.UsedBytes(), 0);
  ExpectServesAndReturnsTo(0);
}

// A forced unload while a worker holds a lease: the model is gone at once, but the
// worker's mapping keeps the memory in use, so the device's used bytes count it until
// the lease ends; then they return to zero.
TEST_F(FaultE2ETest, ForcedUnloadKeepsALeasedArenaCountedUntilTheLeaseEnds) {
  StartDaemon();
  ASSERT_EQ(daemon_.Ctl({"load", "m", "--path=tiny"}).exit_code, 0);
  const double resident = daemon_.UsedBytes();
  ASSERT_GT(resident, 0);
  auto lease = client::Lease::Attach(daemon_.handle_socket(), "m", 0);
  ASSERT_TRUE(lease.ok()) << lease.status();
  ASSERT_EQ(daemon_.Ctl({"unload", "m", "--force"}).exit_code, 0);
  EXPECT_NE(daemon_.Ctl({"manifest", "m"}).exit_code, 0);  // the model is gone
  EXPECT_EQ(daemon_.UsedBytes(), resident);                 // its memory is not
  lease->Release();
  for (int i = 0; i < 500 && daemon_.UsedBytes() != 0; ++i) ::usleep(10000);
  EXPECT_EQ(daemon_.UsedBytes(), 0);
  ExpectServesAndReturnsTo(0);
}

TEST_F(FaultE2ETest, ManyClientsLoadingTheSameModelShareOneLoad) {
  StartDaemon();
  std::vector<std::thread> clients;
  std::vector<int> codes(8, -1);
  for (size_t i = 0; i < codes.size(); ++i) {
    clients.emplace_back([&, i] { codes[i] = daemon_.Ctl({"load", "shared", "--path=tiny"}).exit_code; });
  }
  for (auto& t : clients) t.join();
  for (int code : codes) EXPECT_EQ(code, 0);
  EXPECT_EQ(daemon_.Metric("weightd_loads_total{result=\"ok\"}"), 1);
  double one_model = daemon_.UsedBytes();
  EXPECT_GT(one_model, 0);
  EXPECT_EQ(daemon_.Ctl({"unload", "shared"}).exit_code, 0);
  ExpectServesAndReturnsTo(0);
}

TEST_F(FaultE2ETest, ManyModelsLoadingAtOnceAllLandAndAllLeave) {
  StartDaemon();
  std::vector<std::thread> clients;
  std::vector<int> codes(6, -1);
  for (size_t i = 0; i < codes.size(); ++i) {
    clients.emplace_back([&, i] {
      std::string id = "m" + std::to_string(i);
      codes[i] = (i % 2 ? daemon_.Ctl({"load", id, "--path=tiny"})
                        : daemon_.Ctl({"load", id, "--push=" + daemon_.model_root() + "/tiny"}))
                     .exit_code;
    });
  }
  for (auto& t : clients) t.join();
  for (int code : codes) EXPECT_EQ(code, 0);
  EXPECT_EQ(daemon_.Metric("weightd_loads_total{result=\"ok\"}"), 6);
  for (size_t i = 0; i < codes.size(); ++i) EXPECT_EQ(daemon_.Ctl({"unload", "m" + std::to_string(i)}).exit_code, 0);
  ExpectServesAndReturnsTo(0);
}

}  // namespace
}  // namespace weightd::testing
