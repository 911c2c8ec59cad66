// The memory and CPUs this process may really use: the node's figures narrowed by
// its cgroup (v2: memory.max, cpu.max; v1: memory.limit_in_bytes,
// cpu.cfs_quota_us / cpu.cfs_period_us) and its CPU affinity mask. The daemon's
// `auto` sizes follow these (--host-memory-limit, the host backend's device
// capacity, thread pools), so a container's limits bound them, not the node's.
//
// The process's cgroup comes from /proc/self/cgroup, its directory from the
// cgroup mount in /proc/self/mountinfo; every level from there up to the mount
// counts (a parent's limit binds its children). A file that is missing leaves the
// node's figure; one that cannot be parsed too, and is named in `problem`.
// Nothing here fails.
// Thread-safe (no shared state).
#pragma once

#include <cstdint>
#include <string>

namespace weightd {

// The node's own figures, before any cgroup.
struct NodeResources {
  uint64_t memory_bytes = 0;  // physical memory
  int cpus = 0;               // online CPUs
  int affinity_cpus = 0;      // CPUs in the process's affinity mask; 0: unknown
};

// Physical memory, online CPUs and sched_getaffinity of this process.
NodeResources ReadNodeResources();

struct ContainerLimits {
  uint64_t memory_bytes = 0;   // min(node memory, cgroup memory limit)
  std::string memory_source;   // which bound it: "cgroup v2", "cgroup v1" or "node"
  int cpus = 0;                // min(node CPUs, affinity, ceil(cgroup quota / period)), at least 1
  std::string cpus_source;     // "cgroup v2", "cgroup v1", "affinity" or "node"
  std::string problem;         // a cgroup file that could not be parsed, and why; empty: none
};

// `root` is "/" on a real system; a test passes a directory that holds
// proc/self/cgroup, proc/self/mountinfo and the cgroup files below the mount
// points that mountinfo names.
ContainerLimits ReadContainerLimits(const std::string& root, const NodeResources& node);

}  // namespace weightd
