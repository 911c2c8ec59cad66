// Keeps large freed buffers in the process instead of returning them to the
// kernel at once. gRPC allocates a buffer for every multi-megabyte message a
// client sends and frees it soon after; with glibc's defaults those blocks are
// mapped, or trimmed off a thread's heap, and faulted in again, page by page,
// for the next message: on loopback that page-fault churn, not the socket,
// bounded a push stream (docs/performance.md). For the pushing tools (weightctl,
// weightd-push-gen); call once at the start of main, before any thread starts.
// The daemon does not: each push stream reuses its few receive buffers
// (services/server/push_shards_reactor.h), which keeps its peak memory low. gRPC's
// own receive slices are still mapped and faulted in again per read there; keeping
// them resident made pushes 4-6% faster but let the daemon's peak memory grow by the
// whole shard of a small push (LoadE2ETest's bound), so it stays off
// (docs/performance.md, "The push path").
#pragma once

namespace weightd {

// Blocks up to 32 MiB come from the heap (the largest glibc serves from a
// thread's heap), and a heap keeps up to 32 MiB free at its top.
void KeepLargeBuffersResident();

}  // namespace weightd
