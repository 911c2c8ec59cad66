// The NCCL path of tensor parallelism on real GPUs: the communicator of a load
// group, its all-reduce(max) and broadcast; a daemon load on one GPU (which
// goes through the communicator, the all-reduce of per-tensor amax and the
// broadcast of replicated tensors) whose export is byte for byte the host
// backend's; with two GPUs or more, every rank of a tp 2 load verifies against
// the CPU reference sliced. Skips where no GPU is visible.
#include <cuda_runtime.h>

#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "services/device/cuda/cuda_backend.h"
#include "services/device/cuda/nccl_collective.h"
#include "tests/e2e/daemon_process.h"
#include "tests/services/load/tp_checkpoint.h"

namespace weightd::testing {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class NcclTpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    gpus_ = cuda::VisibleDeviceCount();
    if (gpus_ == 0) GTEST_SKIP() << "no CUDA device visible: GPU tests skipped";
  }
  int gpus_ = 0;
};

TEST_F(NcclTpTest, AllReduceMaxAndBroadcastOverEveryVisibleGpu) {
  auto backend = cuda::CudaBackend::Create({});
  ASSERT_TRUE(backend.ok()) << backend.status();
  std::vector<int> devices;
  for (int d = 0; d < gpus_; ++d) devices.push_back(d);
  auto group = cuda::NcclCollective::Create(devices);
  ASSERT_TRUE(group.ok()) << group.status();
  std::vector<std::vector<float>> values;
  for (int r = 0; r < gpus_; ++r) values.push_back({static_cast<float>(r), 5.0f - r, 0.25f});
  ASSERT_TRUE((*group)->AllReduceMax(values).ok());
  for (const auto& v : values) {
    EXPECT_EQ(v, (std::vector<float>{static_cast<float>(gpus_ - 1), 5.0f, 0.25f}));
  }

  std::vector<std::unique_ptr<DeviceAllocation>> allocations;
  std::vector<RankRegion> regions;
  for (int d : devices) {
    allocations.push_back(*(*backend)->Allocate(d, 4 << 20, "nccl-test"));
    regions.push_back({allocations.back().get(), 4096});
  }
  std::string bytes(3 << 20, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 131 + 7);
  ASSERT_TRUE((*backend)->Write(*allocations[0], 4096, bytes).ok());
  ASSERT_TRUE((*backend)->Synchronize(0).ok());
  ASSERT_TRUE((*group)->Broadcast(0, regions, bytes.size()).ok());
  for (auto& allocation : allocations) {
    std::string out(bytes.size(), '\0');
    ASSERT_TRUE((*backend)->Read(*allocation, 4096, out.size(), out.data()).ok());
    EXPECT_TRUE(out == bytes) << "device " << allocation->device();
  }
}

TEST_F(NcclTpTest, TheCudaBackendHandsLoadsOneNcclCommunicatorPerDeviceList) {
  cuda::CudaBackendOptions options;
  options.nccl_min_ranks = 1;
  auto backend = cuda::CudaBackend::Create(options);
  ASSERT_TRUE(backend.ok()) << backend.status();
  auto first = (*backend)->GroupCollective({0});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_NE(dynamic_cast<cuda::NcclCollective*>(first->get()), nullptr);
  auto again = (*backend)->GroupCollective({0});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(first->get(), again->get()) << "a second load on the same devices made a new communicator";

  // By default a one-GPU load holds no NCCL buffers: its group copies in process.
  auto plain = cuda::CudaBackend::Create({});
  ASSERT_TRUE(plain.ok()) << plain.status();
  auto single = (*plain)->GroupCollective({0});
  ASSERT_TRUE(single.ok()) << single.status();
  EXPECT_EQ(dynamic_cast<cuda::NcclCollective*>(single->get()), nullptr);
}

TEST_F(NcclTpTest, OneRankLoadThroughNcclEqualsTheHostPathByteForByte) {
  DaemonProcess gpu, host;
  for (DaemonProcess* d : {&gpu, &host}) ASSERT_TRUE(WriteTpCheckpoint(MakeTpCheckpoint(), d->model_root() + "/tp").ok());
  gpu.Start({"--backend=cuda", "--nccl-min-ranks=1"});
  host.Start({"--backend=host"});
  for (const char* scheme : {"per-tensor", "per-channel", "block"}) {
    SCOPED_TRACE(scheme);
    for (DaemonProcess* d : {&gpu, &host}) {
      CommandResult load = d->Ctl({"load", scheme, "--path=tp", std::string("--scheme=") + scheme});
      ASSERT_EQ(load.exit_code, 0) << load.err;
      CommandResult out = d->Ctl({"export", scheme, d->dir() + "/" + scheme});
      ASSERT_EQ(out.exit_code, 0) << out.err;
    }
    const std::string a = ReadFile(gpu.dir() + "/" + scheme + "/model.safetensors");
    ASSERT_FALSE(a.empty());
    EXPECT_TRUE(a == ReadFile(host.dir() + "/" + scheme + "/model.safetensors")) << "GPU and host exports differ";
  }
}

TEST_F(NcclTpTest, EveryRankOfATp2LoadOnTwoGpusVerifies) {
  if (gpus_ < 2) GTEST_SKIP() << "one GPU visible: the tp 2 load needs two";
  DaemonProcess daemon;
  ASSERT_TRUE(WriteTpCheckpoint(MakeTpCheckpoint(), daemon.model_root() + "/tp").ok());
  daemon.Start({"--backend=cuda"});
  CommandResult load = daemon.Ctl({"load", "m", "--path=tp", "--tp=2"});
  ASSERT_EQ(load.exit_code, 0) << load.err;
  for (int r = 0; r < 2; ++r) {
    const std::string out = absl::StrCat(daemon.dir(), "/rank", r);
    CommandResult exported = daemon.Ctl({"export", "m", out, absl::StrCat("--rank=", r)});
    ASSERT_EQ(exported.exit_code, 0) << exported.err;
    CommandResult verify = daemon.Ctl({"verify", daemon.model_root() + "/tp", out, "--tp=2", absl::StrCat("--rank=", r)});
    EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
  }
}

}  // namespace
}  // namespace weightd::testing
