// A collective that never returns, as an NCCL call does when a peer rank is
// wedged, simulated on two host devices with --test-hang-collective: a forced
// unload of the load stuck in it completes with a clear status, the daemon goes
// on serving, and SIGTERM ends it (exit status 3: a thread was left in a device
// call). Every wait is bounded, so on a daemon that blocks behind the hung call
// the test fails instead of hanging; the bounds are generous (what is asserted
// is that each step completes, not how fast).
#include <chrono>
#include <future>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/e2e/daemon_process.h"
#include "tests/services/load/tp_checkpoint.h"

namespace weightd::testing {
namespace {

using std::chrono::seconds;

constexpr seconds kCompletes(30);  // "completes": far beyond what any step takes on a busy machine
// How long shutdown waits for the stuck thread (--shutdown-grace-seconds): short, so
// that SIGTERM's bound is checked without waiting the default 10 s in every test.
constexpr int kGraceSeconds = 2;

class HungCollectiveE2ETest : public ::testing::Test {
 protected:
  void StartHangingIn(const std::string& operation) {
    ASSERT_TRUE(WriteTpCheckpoint(MakeTpCheckpoint(), daemon_.model_root() + "/tp").ok());
    CommandResult gen = daemon_.GenerateTiny("tiny", {"--dtype=bf16"});
    ASSERT_EQ(gen.exit_code, 0) << gen.err;
    daemon_.Start({"--host-devices=2", "--test-hang-collective=" + operation,
                   absl::StrCat("--shutdown-grace-seconds=", kGraceSeconds)});
  }

  // A daemon that did not stop in time is killed, so a failed test ends; then
  // the background load ends too (its connection closes).
  void TearDown() override {
    daemon_.StopWithin(kCompletes);
    if (load_.valid()) load_.wait();
  }

  // The load of model m (tp 2) with `flags` naming its source, run beside the
  // test into load_; killed if it has not ended well after the test's own bounds.
  void LoadInBackground(const std::vector<std::string>& flags) {
    std::vector<std::string> args = {"load", "m", "--tp=2"};
    args.insert(args.end(), flags.begin(), flags.end());
    load_ = std::async(std::launch::async, [this, args] { return daemon_.Ctl(args, 3 * kCompletes); });
  }

  bool WaitForHang() {
    const auto deadline = std::chrono::steady_clock::now() + kCompletes;
    while (std::chrono::steady_clock::now() < deadline) {
      if (daemon_.log().find("\"test_collective_hang\"") != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  double Used(int device) const {
    return daemon_.Metric(absl::StrCat("weightd_device_memory_used_bytes{device=\"", device, "\"}"));
  }

  // A forced unload of the stuck load answers, its LoadModel call ends ABORTED,
  // and the model is gone.
  void ExpectForcedUnloadCompletes() {
    CommandResult unload = daemon_.Ctl({"unload", "m", "--force"}, kCompletes);
    ASSERT_FALSE(unload.timed_out) << "unload --force did not complete while the collective hangs";
    EXPECT_EQ(unload.exit_code, 0) << unload.err;
    CommandResult loaded = load_.get();
    EXPECT_FALSE(loaded.timed_out) << "the LoadModel call did not end after the forced unload";
    EXPECT_EQ(loaded.exit_code, 1);
    EXPECT_NE(loaded.err.find("ABORTED: model 'm' was unloaded during its load"), std::string::npos) << loaded.err;
    CommandResult list = daemon_.Ctl({"list"}, kCompletes);
    EXPECT_EQ(list.exit_code, 0) << list.err;
    EXPECT_EQ(list.out.find("\nm "), std::string::npos) << list.out;  // no row of model m
  }

  // The daemon still loads (tp 1: no collective) and frees, back to `used`.
  void ExpectServesAndReturnsTo(double used0, double used1) {
    CommandResult load = daemon_.Ctl({"load", "after", "--path=tiny"}, kCompletes);
    EXPECT_EQ(load.exit_code, 0) << load.err;
    EXPECT_GT(Used(0), used0);
    EXPECT_EQ(daemon_.Ctl({"unload", "after"}, kCompletes).exit_code, 0);
    EXPECT_EQ(Used(0), used0);
    EXPECT_EQ(Used(1), used1);
  }

  // SIGTERM ends the daemon although a thread never leaves the collective: it
  // exits 3 and says so.
  void ExpectSigtermEndsTheDaemon() {
    std::optional<int> code = daemon_.StopWithin(kCompletes);
    ASSERT_TRUE(code.has_value()) << "weightd did not exit after SIGTERM:\n" << daemon_.log();
    EXPECT_EQ(*code, 3) << daemon_.log();
    EXPECT_NE(daemon_.log().find("\"shutdown_abandoned\""), std::string::npos) << daemon_.log();
    EXPECT_NE(daemon_.log().find(absl::StrCat("still in a task ", kGraceSeconds, " s after")), std::string::npos)
        << daemon_.log();
    EXPECT_NE(daemon_.log().find("\"phase\":\"done\""), std::string::npos) << daemon_.log();
  }

  DaemonProcess daemon_;
  std::future<CommandResult> load_;
};

// The broadcast of replicated tensors runs once every byte has landed. It
// writes to every rank's arena, so that memory stays reserved until the call
// returns (here: never); it is counted, never handed to another load.
TEST_F(HungCollectiveE2ETest, ForcedUnloadAndSigtermCompleteWhileABroadcastNeverReturns) {
  StartHangingIn("broadcast");
  LoadInBackground({"--path=tp"});
  ASSERT_TRUE(WaitForHang()) << daemon_.log();
  const double held0 = Used(0), held1 = Used(1);
  EXPECT_GT(held0, 0);
  EXPECT_GT(held1, 0);
  CommandResult list = daemon_.Ctl({"list"}, kCompletes);
  EXPECT_FALSE(list.timed_out);
  EXPECT_NE(list.out.find("LOADING"), std::string::npos) << list.out;

  ASSERT_NO_FATAL_FAILURE(ExpectForcedUnloadCompletes());
  // The documented remainder: the stuck call's arenas, exactly.
  EXPECT_EQ(Used(0), held0);
  EXPECT_EQ(Used(1), held1);
  ExpectServesAndReturnsTo(held0, held1);
  ExpectSigtermEndsTheDaemon();
}

// A push load's last shard lands the load on the thread that received it: the
// PushShards call is answered before that work, so it does not hang with it,
// and neither does the gRPC server's shutdown.
TEST_F(HungCollectiveE2ETest, ForcedUnloadAndSigtermCompleteWhileAPushedLoadsBroadcastNeverReturns) {
  StartHangingIn("broadcast");
  LoadInBackground({"--push=" + daemon_.model_root() + "/tp"});
  ASSERT_TRUE(WaitForHang()) << daemon_.log();
  const double held0 = Used(0), held1 = Used(1);
  EXPECT_GT(held0, 0);

  ASSERT_NO_FATAL_FAILURE(ExpectForcedUnloadCompletes());
  EXPECT_EQ(Used(0), held0);
  EXPECT_EQ(Used(1), held1);
  ExpectServesAndReturnsTo(held0, held1);
  ExpectSigtermEndsTheDaemon();
}

// The all-reduce of split tensors' amax (scale scope tensor, per-channel) runs
// on host values while the load places its tensors; it holds no device memory,
// so the forced unload frees all of it.
TEST_F(HungCollectiveE2ETest, ForcedUnloadAndSigtermCompleteWhileAnAllReduceNeverReturns) {
  StartHangingIn("all_reduce");
  LoadInBackground({"--path=tp", "--scheme=per-channel"});
  ASSERT_TRUE(WaitForHang()) << daemon_.log();
  EXPECT_GT(Used(0), 0);

  ASSERT_NO_FATAL_FAILURE(ExpectForcedUnloadCompletes());
  EXPECT_EQ(Used(0), 0);
  EXPECT_EQ(Used(1), 0);
  ExpectServesAndReturnsTo(0, 0);
  ExpectSigtermEndsTheDaemon();
}

// A push stream places each gathered tensor on the placement executor while it
// gathers the next, and waits for that placement before the next: once the load
// has failed it stops waiting, so the PushShards calls end (ABORTED) although
// the placement never returns.
TEST_F(HungCollectiveE2ETest, ForcedUnloadAndSigtermCompleteWhileAPushedLoadsAllReduceNeverReturns) {
  StartHangingIn("all_reduce");
  LoadInBackground({"--push=" + daemon_.model_root() + "/tp", "--scheme=per-channel"});
  ASSERT_TRUE(WaitForHang()) << daemon_.log();

  ASSERT_NO_FATAL_FAILURE(ExpectForcedUnloadCompletes());
  EXPECT_EQ(Used(0), 0);
  EXPECT_EQ(Used(1), 0);
  ExpectServesAndReturnsTo(0, 0);
  ExpectSigtermEndsTheDaemon();
}

}  // namespace
}  // namespace weightd::testing
