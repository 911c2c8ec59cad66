#include "base/container_limits.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace weightd {
namespace {

constexpr char kV2[] = "cgroup v2";
constexpr char kV1[] = "cgroup v1";
// Far above any file read here; a /proc file has no size to trust.
constexpr size_t kMaxFileBytes = 1 << 20;

std::optional<std::string> ReadText(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::string text;
  char buffer[4096];
  while (text.size() <= kMaxFileBytes && (in.read(buffer, sizeof(buffer)) || in.gcount() > 0)) {
    text.append(buffer, static_cast<size_t>(in.gcount()));
  }
  return text;
}

bool HasToken(absl::string_view list, absl::string_view token) {
  for (absl::string_view part : absl::StrSplit(list, ',')) {
    if (part == token) return true;
  }
  return false;
}

// Where a hierarchy is mounted: the part of it the mount shows (mountinfo's
// "root") and the mount point.
struct Mount {
  std::string root;
  std::string point;
};

struct Mounts {
  std::optional<Mount> v2, v1_memory, v1_cpu;
};

// /proc/self/mountinfo: "ID PARENT MAJ:MIN ROOT POINT OPTIONS [TAGS...] - FSTYPE SOURCE SUPER".
Mounts ParseMountInfo(const std::string& text) {
  Mounts mounts;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    size_t dash = line.find(" - ");
    if (dash == absl::string_view::npos) continue;
    std::vector<absl::string_view> head = absl::StrSplit(line.substr(0, dash), ' ', absl::SkipEmpty());
    std::vector<absl::string_view> tail = absl::StrSplit(line.substr(dash + 3), ' ', absl::SkipEmpty());
    if (head.size() < 5 || tail.empty()) continue;
    Mount mount{std::string(head[3]), std::string(head[4])};
    if (tail[0] == "cgroup2" && !mounts.v2) mounts.v2 = mount;
    if (tail[0] != "cgroup" || tail.size() < 3) continue;
    if (HasToken(tail[2], "memory") && !mounts.v1_memory) mounts.v1_memory = mount;
    if (HasToken(tail[2], "cpu") && !mounts.v1_cpu) mounts.v1_cpu = mount;
  }
  return mounts;
}

struct CgroupPaths {
  std::optional<std::string> v2, v1_memory, v1_cpu;
};

// /proc/self/cgroup: "0::/path" for v2, "ID:controller,...:/path" for v1.
CgroupPaths ParseProcCgroup(const std::string& text) {
  CgroupPaths paths;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> parts = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (parts.size() != 3) continue;
    if (parts[0] == "0" && parts[1].empty()) paths.v2 = std::string(parts[2]);
    if (HasToken(parts[1], "memory")) paths.v1_memory = std::string(parts[2]);
    if (HasToken(parts[1], "cpu")) paths.v1_cpu = std::string(parts[2]);
  }
  return paths;
}

// The process's cgroup directory and each parent up to the mount point, under
// `base`. Without a cgroup namespace the mount shows the container's own cgroup
// (its root), which /proc/self/cgroup repeats: strip it. A path outside what the
// mount shows leaves the mount point alone.
std::vector<std::string> Levels(const std::string& base, const Mount& mount, const std::string& cgroup) {
  std::string relative = cgroup;
  if (mount.root != "/") relative = absl::StartsWith(cgroup, mount.root) ? cgroup.substr(mount.root.size()) : "";
  while (absl::EndsWith(relative, "/")) relative.pop_back();
  const std::string mount_dir = base + std::string(absl::StripSuffix(mount.point, "/"));
  std::vector<std::string> levels;
  for (;;) {
    levels.push_back(mount_dir + relative);
    size_t slash = relative.rfind('/');
    if (relative.empty() || slash == std::string::npos) break;
    relative.resize(slash);
  }
  return levels;
}

// A limit file's verdict: NOT_FOUND when absent, OK(nullopt) for "no limit",
// INVALID_ARGUMENT when it cannot be parsed.
using Limit = absl::StatusOr<std::optional<uint64_t>>;

absl::StatusOr<std::string> ReadLimitFile(const std::string& path) {
  std::optional<std::string> text = ReadText(path);
  if (!text) return absl::NotFoundError(path);
  return std::string(absl::StripAsciiWhitespace(*text));
}

absl::StatusOr<uint64_t> PositiveNumber(absl::string_view text, absl::string_view what) {
  uint64_t value = 0;
  if (!absl::SimpleAtoi(text, &value) || value == 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, " '", text.substr(0, 64), "' is not a positive number"));
  }
  return value;
}

uint64_t CeilDiv(uint64_t a, uint64_t b) { return a / b + (a % b != 0); }

// A memory limit file: a byte count, or `none` for no limit.
Limit MemoryLimit(const std::string& path, absl::string_view file, absl::string_view none) {
  absl::StatusOr<std::string> text = ReadLimitFile(path);
  if (!text.ok()) return text.status();
  if (*text == none) return std::nullopt;
  absl::StatusOr<uint64_t> bytes = PositiveNumber(*text, file);
  if (!bytes.ok()) return bytes.status();
  return *bytes;
}

Limit V2Memory(const std::string& dir) { return MemoryLimit(dir + "/memory.max", "memory.max", "max"); }

// "-1" is no limit; most kernels write a huge number instead, which the node's figure undercuts.
Limit V1Memory(const std::string& dir) {
  return MemoryLimit(dir + "/memory.limit_in_bytes", "memory.limit_in_bytes", "-1");
}

// cpu.max: "QUOTA PERIOD" in microseconds, or "max PERIOD".
Limit V2Cpus(const std::string& dir) {
  absl::StatusOr<std::string> text = ReadLimitFile(dir + "/cpu.max");
  if (!text.ok()) return text.status();
  std::vector<absl::string_view> fields = absl::StrSplit(*text, ' ', absl::SkipEmpty());
  if (fields.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat("cpu.max '", text->substr(0, 64), "' is not 'QUOTA PERIOD'"));
  }
  if (fields[0] == "max") return std::nullopt;
  absl::StatusOr<uint64_t> quota = PositiveNumber(fields[0], "cpu.max quota");
  if (!quota.ok()) return quota.status();
  absl::StatusOr<uint64_t> period = PositiveNumber(fields[1], "cpu.max period");
  if (!period.ok()) return period.status();
  return CeilDiv(*quota, *period);
}

Limit V1Cpus(const std::string& dir) {
  absl::StatusOr<std::string> quota_text = ReadLimitFile(dir + "/cpu.cfs_quota_us");
  if (!quota_text.ok()) return quota_text.status();
  if (*quota_text == "-1") return std::nullopt;
  absl::StatusOr<uint64_t> quota = PositiveNumber(*quota_text, "cpu.cfs_quota_us");
  if (!quota.ok()) return quota.status();
  absl::StatusOr<std::string> period_text = ReadLimitFile(dir + "/cpu.cfs_period_us");
  if (!period_text.ok()) {
    return absl::InvalidArgumentError("cpu.cfs_quota_us without cpu.cfs_period_us");
  }
  absl::StatusOr<uint64_t> period = PositiveNumber(*period_text, "cpu.cfs_period_us");
  if (!period.ok()) return period.status();
  return CeilDiv(*quota, *period);
}

// The tightest limit over every level of one hierarchy.
struct Bound {
  bool found = false;              // some level has the file: this hierarchy decides
  std::optional<uint64_t> value;   // nullopt: no level limits it
};

Bound Tightest(const std::vector<std::string>& levels, Limit (*read)(const std::string&), std::string* problem) {
  Bound bound;
  for (const std::string& dir : levels) {
    Limit limit = read(dir);
    if (absl::IsNotFound(limit.status())) continue;
    bound.found = true;
    if (!limit.ok()) {
      if (problem->empty()) *problem = absl::StrCat(dir, ": ", limit.status().message());
      continue;
    }
    if (*limit && (!bound.value || **limit < *bound.value)) bound.value = **limit;
  }
  return bound;
}

}  // namespace

NodeResources ReadNodeResources() {
  NodeResources node;
  node.memory_bytes =
      static_cast<uint64_t>(::sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  node.cpus = static_cast<int>(std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN)));
  cpu_set_t set;
  CPU_ZERO(&set);
  // Fails on a machine of more CPUs than a cpu_set_t holds (1024): then unknown.
  if (::sched_getaffinity(0, sizeof(set), &set) == 0) node.affinity_cpus = CPU_COUNT(&set);
  return node;
}

ContainerLimits ReadContainerLimits(const std::string& root, const NodeResources& node) {
  ContainerLimits out;
  out.memory_bytes = node.memory_bytes;
  out.memory_source = "node";
  out.cpus = std::max(1, node.cpus);
  out.cpus_source = "node";
  if (node.affinity_cpus > 0 && node.affinity_cpus < out.cpus) {
    out.cpus = node.affinity_cpus;
    out.cpus_source = "affinity";
  }
  const std::string base(absl::StripSuffix(root, "/"));
  std::optional<std::string> mountinfo = ReadText(base + "/proc/self/mountinfo");
  std::optional<std::string> cgroup = ReadText(base + "/proc/self/cgroup");
  if (!mountinfo || !cgroup) return out;
  const Mounts mounts = ParseMountInfo(*mountinfo);
  const CgroupPaths paths = ParseProcCgroup(*cgroup);

  // v2 first. On a hybrid host its hierarchy has no controllers, so its files are
  // absent and v1 answers.
  Bound memory, cpus;
  const char* memory_from = kV2;
  const char* cpus_from = kV2;
  if (mounts.v2 && paths.v2) {
    std::vector<std::string> levels = Levels(base, *mounts.v2, *paths.v2);
    memory = Tightest(levels, V2Memory, &out.problem);
    cpus = Tightest(levels, V2Cpus, &out.problem);
  }
  if (!memory.found && mounts.v1_memory && paths.v1_memory) {
    memory = Tightest(Levels(base, *mounts.v1_memory, *paths.v1_memory), V1Memory, &out.problem);
    memory_from = kV1;
  }
  if (!cpus.found && mounts.v1_cpu && paths.v1_cpu) {
    cpus = Tightest(Levels(base, *mounts.v1_cpu, *paths.v1_cpu), V1Cpus, &out.problem);
    cpus_from = kV1;
  }
  if (memory.value && *memory.value < out.memory_bytes) {
    out.memory_bytes = *memory.value;
    out.memory_source = memory_from;
  }
  if (cpus.value && *cpus.value < static_cast<uint64_t>(out.cpus)) {
    out.cpus = static_cast<int>(*cpus.value);
    out.cpus_source = cpus_from;
  }
  return out;
}

}  // namespace weightd
