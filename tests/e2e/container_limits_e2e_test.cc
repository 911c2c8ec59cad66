// End to end: the real daemon sizes `auto` from its container's limits. The cgroup
// files are a cgroup v2 tree written into a test directory and named with
// --test-cgroup-root (a real cgroup cannot be made here); the daemon's `ready`
// line and its device capacity show what it derived from them.
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "tests/e2e/daemon_process.h"

namespace weightd::testing {
namespace {

constexpr uint64_t kMiB = 1ull << 20;

class ContainerLimitsE2ETest : public ::testing::Test {
 protected:
  // A process in cgroup /pod/ctr of a v2 hierarchy mounted at /sys/fs/cgroup, with
  // these memory.max and cpu.max.
  std::string CgroupTree(const std::string& memory_max, const std::string& cpu_max) {
    const std::filesystem::path root = daemon_.dir() + "/cgroup-root";
    auto write = [&root](const std::string& path, const std::string& text) {
      std::filesystem::create_directories((root / path).parent_path());
      std::ofstream(root / path) << text << "\n";
    };
    write("proc/self/mountinfo", "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev - cgroup2 cgroup2 rw");
    write("proc/self/cgroup", "0::/pod/ctr");
    write("sys/fs/cgroup/pod/ctr/memory.max", memory_max);
    write("sys/fs/cgroup/pod/ctr/cpu.max", cpu_max);
    return "--test-cgroup-root=" + root.string();
  }

  DaemonProcess daemon_;
};

TEST_F(ContainerLimitsE2ETest, AutoFollowsTheCgroupsMemoryAndCpuLimits) {
  daemon_.Start({CgroupTree("268435456", "100000 100000"), "--host-devices=2"});
  nlohmann::json ready = daemon_.ReadyRecord();
  ASSERT_TRUE(ready.is_object()) << daemon_.log();
  EXPECT_EQ(ready["memory_limit_bytes"], 256 * kMiB);
  EXPECT_EQ(ready["memory_limit_source"], "cgroup v2");
  EXPECT_EQ(ready["host_memory_limit_bytes"], 64 * kMiB);  // a quarter
  EXPECT_EQ(ready["cpus"], 1);
  EXPECT_EQ(ready["cpus_source"], "cgroup v2");
  EXPECT_EQ(ready["work_threads"], 2);  // never fewer than 2
  EXPECT_EQ(ready["read_threads"], 2);
  // The host devices share the container's memory, not the node's.
  EXPECT_EQ(daemon_.Metric("weightd_device_memory_capacity_bytes{device=\"0\"}"), 128 * kMiB);
  EXPECT_EQ(daemon_.Metric("weightd_device_memory_capacity_bytes{device=\"1\"}"), 128 * kMiB);
}

TEST_F(ContainerLimitsE2ETest, ExplicitFlagsWinOverTheCgroup) {
  daemon_.Start({CgroupTree("268435456", "100000 100000"), "--host-memory-limit=8MiB", "--read-threads=5"});
  nlohmann::json ready = daemon_.ReadyRecord();
  ASSERT_TRUE(ready.is_object()) << daemon_.log();
  EXPECT_EQ(ready["host_memory_limit_bytes"], 8 * kMiB);
  EXPECT_EQ(ready["read_threads"], 5);
  EXPECT_EQ(ready["memory_limit_source"], "cgroup v2");
}

TEST_F(ContainerLimitsE2ETest, NoLimitMeansTheNodesFigures) {
  daemon_.Start({CgroupTree("max", "max 100000")});
  nlohmann::json ready = daemon_.ReadyRecord();
  ASSERT_TRUE(ready.is_object()) << daemon_.log();
  EXPECT_EQ(ready["memory_limit_source"], "node");
  EXPECT_NE(ready["cpus_source"], "cgroup v2");  // the node's count, or the affinity mask's
  EXPECT_EQ(ready["host_memory_limit_bytes"], ready["memory_limit_bytes"].get<uint64_t>() / 4);
  EXPECT_EQ(daemon_.Metric("weightd_device_memory_capacity_bytes{device=\"0\"}"),
            ready["memory_limit_bytes"].get<double>());
}

TEST_F(ContainerLimitsE2ETest, AGarbledFileIsAWarningAndTheNodesFigures) {
  daemon_.Start({CgroupTree("plenty", "max 100000")});
  nlohmann::json ready = daemon_.ReadyRecord();
  ASSERT_TRUE(ready.is_object()) << daemon_.log();
  EXPECT_EQ(ready["memory_limit_source"], "node");
  EXPECT_NE(daemon_.log().find("\"event\":\"cgroup_unreadable\""), std::string::npos) << daemon_.log();
  EXPECT_NE(daemon_.log().find("memory.max 'plenty' is not a positive number"), std::string::npos);
}

TEST_F(ContainerLimitsE2ETest, ThreadRingAndPinFlagsOutOfRangeAreRefusedNamingTheFlag) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--pin-threads=0", "--pin-threads must be at least 1"},
      {"--quantize-threads=-1", "--quantize-threads must be at least 0"},
      {"--staging-slots=0", "--staging-slots and --staging-copy-streams must be at least 1"},
      {"--shutdown-grace-seconds=0", "--shutdown-grace-seconds must be at least 1"},
      {"--staging-ring-bytes=0", "--staging-ring-bytes must be more than 0 (or auto)"},
      {"--staging-ring-bytes=lots", "--staging-ring-bytes: "},
      {"--pin-pushed-tensors=maybe", "--pin-pushed-tensors must be auto, true or false, not 'maybe'"},
      {"--staging-blocking-waits=maybe", "--staging-blocking-waits must be auto, true or false, not 'maybe'"},
  };
  for (const auto& [flag, message] : cases) {
    CommandResult run = RunCommand({BinPath("weightd"), flag, "--listen=unix:" + daemon_.dir() + "/w.sock",
                                    "--handle-socket=" + daemon_.handle_socket(), "--metrics-address=",
                                    "--backend=host"});
    EXPECT_EQ(run.exit_code, 2) << flag << ": " << run.err;
    EXPECT_NE(run.err.find(message), std::string::npos) << flag << ": " << run.err;
  }
}

}  // namespace
}  // namespace weightd::testing
