// ReadContainerLimits on cgroup trees written into a temporary directory, as the
// kernel lays them out: v2 (with limits, "max", a parent's limit, with and without
// a cgroup namespace), v1 (with and without limits), a hybrid host, and missing,
// garbled and zero files, which leave the node's figures.
#include "base/container_limits.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace weightd {
namespace {

constexpr uint64_t kGiB = 1ull << 30;
const NodeResources kNode{64 * kGiB, 16, 16};

constexpr char kV2Mount[] = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw\n";
constexpr char kV1Mounts[] =
    "25 24 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:7 - tmpfs tmpfs ro,mode=755\n"
    "31 25 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:8 - cgroup cgroup rw,memory\n"
    "32 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup "
    "rw,cpu,cpuacct\n";
constexpr char kV1Cgroup[] = "5:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n";

class ContainerLimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/weightd-cgroup-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    root_ = dir;
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  void Write(const std::string& path, const std::string& text) {
    std::filesystem::path full = std::filesystem::path(root_) / path;
    std::filesystem::create_directories(full.parent_path());
    std::ofstream(full) << text;
  }
  // A v2 hierarchy mounted at /sys/fs/cgroup with the process in `cgroup` (e.g.
  // "/ctr"), whose directory holds these memory.max and cpu.max (empty: no file).
  void WriteV2(const std::string& cgroup, const std::string& memory_max, const std::string& cpu_max) {
    Write("proc/self/mountinfo", kV2Mount);
    Write("proc/self/cgroup", "0::" + cgroup + "\n");
    if (!memory_max.empty()) Write("sys/fs/cgroup" + cgroup + "/memory.max", memory_max + "\n");
    if (!cpu_max.empty()) Write("sys/fs/cgroup" + cgroup + "/cpu.max", cpu_max + "\n");
  }
  // v1 memory and cpu hierarchies with the process in /docker/abc, whose directories
  // hold these memory.limit_in_bytes and cpu.cfs_quota_us (period 100000).
  void WriteV1(const std::string& memory_limit, const std::string& cpu_quota) {
    Write("proc/self/mountinfo", kV1Mounts);
    Write("proc/self/cgroup", kV1Cgroup);
    Write("sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes", memory_limit + "\n");
    Write("sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", cpu_quota + "\n");
    Write("sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n");
  }
  ContainerLimits Read(const NodeResources& node = kNode) { return ReadContainerLimits(root_, node); }
  void ExpectTheNodesFigures(const ContainerLimits& limits) {
    EXPECT_EQ(limits.memory_bytes, kNode.memory_bytes);
    EXPECT_EQ(limits.memory_source, "node");
    EXPECT_EQ(limits.cpus, kNode.cpus);
    EXPECT_EQ(limits.cpus_source, "node");
  }

  std::string root_;
};

TEST_F(ContainerLimitsTest, V2LimitsBindMemoryAndCpus) {
  WriteV2("/kubepods/pod1/ctr", "17179869184", "250000 100000");
  ContainerLimits limits = Read();
  EXPECT_EQ(limits.memory_bytes, 16 * kGiB);
  EXPECT_EQ(limits.memory_source, "cgroup v2");
  EXPECT_EQ(limits.cpus, 3);  // 2.5 CPUs of quota, rounded up
  EXPECT_EQ(limits.cpus_source, "cgroup v2");
  EXPECT_EQ(limits.problem, "");
}

TEST_F(ContainerLimitsTest, V2MaxMeansTheNodesFigures) {
  WriteV2("/ctr", "max", "max 100000");
  ContainerLimits limits = Read();
  ExpectTheNodesFigures(limits);
  EXPECT_EQ(limits.problem, "");
}

TEST_F(ContainerLimitsTest, V2ParentLimitBindsTheChild) {
  WriteV2("/pod/ctr", "max", "400000 100000");
  Write("sys/fs/cgroup/pod/memory.max", "8589934592\n");
  Write("sys/fs/cgroup/pod/cpu.max", "100000 100000\n");
  ContainerLimits limits = Read();
  EXPECT_EQ(limits.memory_bytes, 8 * kGiB);
  EXPECT_EQ(limits.cpus, 1);
}

TEST_F(ContainerLimitsTest, V2InACgroupNamespaceReadsTheMountPoint) {
  WriteV2("/", "", "");
  Write("sys/fs/cgroup/memory.max", "1073741824\n");
  EXPECT_EQ(Read().memory_bytes, 1 * kGiB);
}

TEST_F(ContainerLimitsTest, V2WithoutANamespaceStripsTheMountsRoot) {
  // The container sees only its own cgroup mounted, and /proc/self/cgroup names its full path.
  Write("proc/self/mountinfo",
        "30 23 0:26 /kubepods/pod1/ctr /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw\n");
  Write("proc/self/cgroup", "0::/kubepods/pod1/ctr\n");
  Write("sys/fs/cgroup/memory.max", "2147483648\n");
  ContainerLimits limits = Read();
  EXPECT_EQ(limits.memory_bytes, 2 * kGiB);
  EXPECT_EQ(limits.memory_source, "cgroup v2");
}

TEST_F(ContainerLimitsTest, V1LimitsBindMemoryAndCpus) {
  WriteV1("4294967296", "150000");
  ContainerLimits limits = Read();
  EXPECT_EQ(limits.memory_bytes, 4 * kGiB);
  EXPECT_EQ(limits.memory_source, "cgroup v1");
  EXPECT_EQ(limits.cpus, 2);
  EXPECT_EQ(limits.cpus_source, "cgroup v1");
  EXPECT_EQ(limits.problem, "");
}

TEST_F(ContainerLimitsTest, V1WithoutLimitsMeansTheNodesFigures) {
  // What the kernel writes for "no limit": the largest page-aligned signed 64-bit value.
  WriteV1("9223372036854771712", "-1");
  ContainerLimits limits = Read();
  ExpectTheNodesFigures(limits);
  EXPECT_EQ(limits.problem, "");
}

TEST_F(ContainerLimitsTest, HybridHostReadsV1WhereV2HasNoControllers) {
  Write("proc/self/mountinfo",
        std::string(kV1Mounts) +
            "33 25 0:29 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec - cgroup2 cgroup2 rw,nsdelegate\n");
  Write("proc/self/cgroup", std::string(kV1Cgroup) + "0::/docker/abc\n");
  Write("sys/fs/cgroup/unified/docker/abc/cgroup.procs", "1\n");
  Write("sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes", "4294967296\n");
  ContainerLimits limits = Read();
  EXPECT_EQ(limits.memory_bytes, 4 * kGiB);
  EXPECT_EQ(limits.memory_source, "cgroup v1");
}

TEST_F(ContainerLimitsTest, MissingFilesLeaveTheNodesFigures) {
  ContainerLimits limits = Read();  // an empty directory: no /proc at all
  ExpectTheNodesFigures(limits);
  EXPECT_EQ(limits.problem, "");

  WriteV2("/ctr", "", "");  // a cgroup without its files
  limits = Read();
  ExpectTheNodesFigures(limits);
  EXPECT_EQ(limits.problem, "");
}

TEST_F(ContainerLimitsTest, GarbledFilesLeaveTheNodesFiguresAndAreNamed) {
  WriteV2("/ctr", "lots", "1 2 3");
  ContainerLimits limits = Read();
  ExpectTheNodesFigures(limits);
  EXPECT_EQ(limits.problem, root_ + "/sys/fs/cgroup/ctr: memory.max 'lots' is not a positive number");
}

TEST_F(ContainerLimitsTest, ZeroLimitsAndGarbageProcFilesAreIgnored) {
  WriteV2("/ctr", "0", "0 100000");
  Write("proc/self/mountinfo", std::string("garbage\n - \n\n") + kV2Mount + "1 2 3 - cgroup\n");
  Write("proc/self/cgroup", "::\nnot a line\n0::/ctr\n");
  ContainerLimits limits = Read();
  ExpectTheNodesFigures(limits);
  EXPECT_NE(limits.problem, "");
}

TEST_F(ContainerLimitsTest, AffinityNarrowerThanTheNodeAndTheQuota) {
  WriteV2("/ctr", "", "800000 100000");
  ContainerLimits limits = Read(NodeResources{64 * kGiB, 16, 4});
  EXPECT_EQ(limits.cpus, 4);
  EXPECT_EQ(limits.cpus_source, "affinity");
  EXPECT_EQ(Read(NodeResources{64 * kGiB, 16, 0}).cpus, 8);  // affinity unknown: the quota
}

TEST(ReadNodeResources, ThisMachineHasMemoryAndCpus) {
  NodeResources node = ReadNodeResources();
  EXPECT_GT(node.memory_bytes, 0u);
  EXPECT_GE(node.cpus, 1);
  EXPECT_GE(node.affinity_cpus, 1);
  EXPECT_LE(node.affinity_cpus, node.cpus);
}

}  // namespace
}  // namespace weightd
