// Keeps large freed buffers in the process instead of returning them to the
// kernel at once. gRPC allocates a buffer for every multi-megabyte message a
// client sends and frees it soon after; with glibc's defaults those blocks are
// mapped, or trimmed off a thread's heap, and faulted in again, page by page,
// for the next message: on loopback that page-fault churn, not the socket,
// bounded a push stream (docs/performance.md). The daemon's side has the same churn
// in gRPC's own receive buffers (each socket read lands in a freshly allocated slice
// of up to 4 MiB; its own message buffers are reused, services/server/push_shards_reactor.h):
// profiled on a push, 0.09-0.24 of the daemon's page faults were in the receive's
// copy from the socket, and this cut those by 80-90% (docs/performance.md). For the pushing tools (weightctl,
// weightd-push-gen) and the daemon; call once at the start of main, before any thread
// starts.
#pragma once

namespace weightd {

// Blocks up to 32 MiB come from the heap (the largest glibc serves from a
// thread's heap), and a heap keeps up to 32 MiB free at its top.
void KeepLargeBuffersResident();

}  // namespace weightd
