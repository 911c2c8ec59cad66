// LoadJob holds no lock across device work: while a tp 2 load's allocation or
// final broadcast is stuck (a gate the test holds shut), finished(), status(),
// DescribePending() and Fail() all answer, the failure is reported at once and
// exactly once, and the memory the stuck call uses goes when that call returns,
// on its own thread. Every wait on the code under test is bounded, so a
// regression fails instead of hanging.
#include <stdlib.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "services/device/host_backend.h"
#include "services/load/load_job.h"
#include "services/load/spec_validation.h"
#include "services/sources/checkpoint_dir.h"
#include "services/sources/path_source.h"
#include "tests/services/load/tp_checkpoint.h"

namespace weightd::testing {
namespace {

constexpr int kDevices = 2;
constexpr uint64_t kCapacity = uint64_t{1} << 30;
constexpr auto kBound = std::chrono::seconds(20);  // "answers": far beyond what any call here takes

// A door the code under test walks into and waits at until the test opens it.
class Gate {
 public:
  void Pass() {
    std::unique_lock<std::mutex> lock(mu_);
    entered_ = true;
    cv_.notify_all();
    cv_.wait(lock, [this] { return open_; });
  }
  bool AwaitEntered() {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, kBound, [this] { return entered_; });
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool entered_ = false;
  bool open_ = false;
};

// A collective whose broadcast waits at the gate before it copies.
class GatedCollective : public Collective {
 public:
  GatedCollective(std::shared_ptr<Collective> inner, Gate& gate) : inner_(std::move(inner)), gate_(gate) {}
  int ranks() const override { return inner_->ranks(); }
  absl::Status AllReduceMax(std::vector<std::vector<float>>& values) override { return inner_->AllReduceMax(values); }
  absl::Status Broadcast(int root, const std::vector<RankRegion>& regions, uint64_t size) override {
    gate_.Pass();
    return inner_->Broadcast(root, regions, size);
  }

 private:
  std::shared_ptr<Collective> inner_;
  Gate& gate_;
};

// Host devices whose broadcast, or whose allocation on device 1, waits at a gate.
class GatedBackend : public HostBackend {
 public:
  enum class Where { kBroadcast, kAllocation };
  explicit GatedBackend(Where where) : HostBackend(kDevices, kCapacity), where_(where) {}
  Gate& gate() { return gate_; }

  absl::StatusOr<std::unique_ptr<DeviceAllocation>> Allocate(int device, uint64_t bytes,
                                                             const std::string& label) override {
    if (where_ == Where::kAllocation && device == 1) gate_.Pass();
    return HostBackend::Allocate(device, bytes, label);
  }
  absl::StatusOr<std::shared_ptr<Collective>> GroupCollective(const std::vector<int>& devices) override {
    auto inner = HostBackend::GroupCollective(devices);
    if (!inner.ok() || where_ != Where::kBroadcast) return inner;
    return std::make_shared<GatedCollective>(*std::move(inner), gate_);
  }

 private:
  const Where where_;
  Gate gate_;
};

class LoadJobTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/weightd-load-job-XXXXXX";
    dir_ = ::mkdtemp(pattern);
    ASSERT_TRUE(WriteTpCheckpoint(MakeTpCheckpoint(), dir_ + "/tp").ok());
  }
  void TearDown() override {
    if (backend_ != nullptr) backend_->gate().Open();  // a failed test leaves no thread at the gate
    JoinLoader();
    std::filesystem::remove_all(dir_);
  }

  // A tp 2 path load of the test checkpoint on a backend gated at `where`, run
  // on its own thread; every outcome the job reports lands in outcomes_.
  GatedBackend& StartLoad(GatedBackend::Where where) {
    backend_ = std::make_unique<GatedBackend>(where);
    GatedBackend& backend = *backend_;
    v1::LoadModelRequest request;
    request.set_model_id("m");
    request.mutable_source()->mutable_path()->set_path("tp");
    request.mutable_placement()->set_tp_size(2);
    EXPECT_TRUE(ValidateLoadSpec(request).ok());
    auto files = FindCheckpoint(dir_, "tp");
    if (!files.ok()) {
      ADD_FAILURE() << files.status();
      return backend;
    }
    job_ = std::make_shared<LoadJob>("m", NormalizeSpec(request), backend, accounting_,
                                     [this](const LoadJob*, absl::StatusOr<ResidentModel> result) {
                                       std::lock_guard<std::mutex> lock(mu_);
                                       outcomes_.push_back(result.status());
                                       resident_ = result.ok() ? std::move(*result) : ResidentModel{};
                                       cv_.notify_all();
                                     });
    PathSourceOptions options;  // several segments on two threads
    options.chunk_bytes = 1 << 16;
    options.segment_bytes = 1 << 20;
    options.read_threads = 2;
    loader_ = std::thread([job = job_, files = *files, options] { RunPathLoad(job, files, {}, options); });
    return backend;
  }

  // Runs `call` on another thread; false if it did not return within kBound
  // (the thread is then left behind: the test has failed anyway). `call` must
  // own what it touches.
  template <typename F>
  bool Answers(F call) {
    auto done = std::make_shared<std::promise<void>>();
    std::future<void> returned = done->get_future();
    std::thread([call, done] {
      call();
      done->set_value();
    }).detach();
    return returned.wait_for(kBound) == std::future_status::ready;
  }

  uint64_t Used() const { return accounting_.usage(0).used + accounting_.usage(1).used; }

  bool AwaitUsed(uint64_t bytes) {
    const auto deadline = std::chrono::steady_clock::now() + kBound;
    while (Used() != bytes && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return Used() == bytes;
  }

  std::vector<absl::Status> Outcomes() {
    std::lock_guard<std::mutex> lock(mu_);
    return outcomes_;
  }

  void JoinLoader() {
    if (loader_.joinable()) loader_.join();
  }

  std::string dir_;
  DeviceAccounting accounting_{std::vector<uint64_t>(kDevices, kCapacity)};
  std::unique_ptr<GatedBackend> backend_;
  std::shared_ptr<LoadJob> job_;
  std::thread loader_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<absl::Status> outcomes_;
  ResidentModel resident_;
};

TEST_F(LoadJobTest, AFailureDuringTheFinalBroadcastIsReportedAtOnceAndTheMemoryGoesWhenTheBroadcastReturns) {
  GatedBackend& backend = StartLoad(GatedBackend::Where::kBroadcast);
  ASSERT_TRUE(backend.gate().AwaitEntered());
  const uint64_t held = Used();
  EXPECT_GT(held, 0u);

  auto finished = std::make_shared<bool>(true);
  auto pending = std::make_shared<std::string>();
  ASSERT_TRUE(Answers([job = job_, finished] { *finished = job->finished(); })) << "finished() waits for the broadcast";
  EXPECT_FALSE(*finished);
  ASSERT_TRUE(Answers([job = job_, pending] { *pending = job->DescribePending(); }));
  EXPECT_TRUE(absl::StrContains(*pending, "broadcast")) << *pending;

  ASSERT_TRUE(Answers([job = job_] { job->Fail(absl::AbortedError("unloaded")); })) << "Fail waits for the broadcast";
  ASSERT_EQ(Outcomes().size(), 1u);
  EXPECT_EQ(Outcomes()[0].code(), absl::StatusCode::kAborted);
  EXPECT_TRUE(job_->finished());
  // The broadcast in flight writes every rank's arena: that memory is kept for it.
  EXPECT_EQ(Used(), held);

  backend.gate().Open();
  JoinLoader();
  EXPECT_TRUE(AwaitUsed(0)) << Used();
  ASSERT_EQ(Outcomes().size(), 1u);  // the broadcast's return reports nothing more
  EXPECT_EQ(job_->status().code(), absl::StatusCode::kAborted);
}

TEST_F(LoadJobTest, ABroadcastThatReturnsLandsTheModel) {
  GatedBackend& backend = StartLoad(GatedBackend::Where::kBroadcast);
  ASSERT_TRUE(backend.gate().AwaitEntered());
  backend.gate().Open();
  JoinLoader();
  ASSERT_EQ(Outcomes().size(), 1u);
  EXPECT_TRUE(Outcomes()[0].ok()) << Outcomes()[0];
  EXPECT_EQ(resident_.arenas.size(), 2u);
  EXPECT_GT(Used(), 0u);
  resident_ = ResidentModel{};
  EXPECT_EQ(Used(), 0u);
}

TEST_F(LoadJobTest, AFailureDuringAllocationIsReportedAtOnceAndWhatWasAllocatedGoesWhenAllocationReturns) {
  GatedBackend& backend = StartLoad(GatedBackend::Where::kAllocation);
  ASSERT_TRUE(backend.gate().AwaitEntered());
  EXPECT_GT(Used(), 0u);  // the plan's reservation

  auto pending = std::make_shared<std::string>();
  ASSERT_TRUE(Answers([job = job_, pending] { *pending = job->DescribePending(); }))
      << "DescribePending waits for the allocation";
  EXPECT_TRUE(absl::StrContains(*pending, "device memory")) << *pending;
  ASSERT_TRUE(Answers([job = job_] { job->Fail(absl::UnavailableError("shutting down")); }))
      << "Fail waits for the allocation";
  ASSERT_EQ(Outcomes().size(), 1u);
  EXPECT_EQ(Outcomes()[0].code(), absl::StatusCode::kUnavailable);

  backend.gate().Open();
  JoinLoader();  // every stream resumed with the failure: the path load ends
  EXPECT_TRUE(AwaitUsed(0)) << Used();
  EXPECT_EQ(Outcomes().size(), 1u);
  EXPECT_EQ(job_->layout(), nullptr);  // never published
}

}  // namespace
}  // namespace weightd::testing
