// Drives a load from local safetensors files: reads every shard's header with
// exact-size reads and lets the job plan, then maps each file read-only. The data
// sections are cut into segments of about `segment_bytes`: runs of whole tensors,
// a large quantized tensor alone, or pieces of a large tensor stored unchanged
// (those land at independent offsets). `read_threads` threads take segments of
// every shard in parallel and hand their tensors, as views of the mapping, to the
// shard's writer: gathered tensors whole, streamed ones in pieces of `chunk_bytes`.
// Where the backend pins sources, a PinWindow pins blocks ahead of the readers (the
// GPU then copies them from the page cache in place). A segment outside the page
// cache is read from disk once: through the page cache with pread first and its
// pages dropped after it has landed, or, with `direct_cold_reads`, with O_DIRECT
// into a buffer of its reader (at most `direct_buffer_bytes` each; larger segments
// and file systems without O_DIRECT still go through the page cache;
// services/sources/direct_read.h). No tensor is copied into a host
// buffer otherwise, so host memory does not grow with tensor size. A file that is shorter than its header says
// fails with DATA_LOSS naming the tensor and byte offset. Runs on a loader thread;
// blocks until the load has finished or failed. Thread-safe (no shared state).
#pragma once

#include <memory>

#include "services/load/load_job.h"
#include "services/safetensors/header.h"
#include "services/sources/checkpoint_dir.h"
#include "services/sources/source_hooks.h"

namespace weightd {

struct PathSourceOptions {
  size_t chunk_bytes = 8u << 20;
  uint64_t segment_bytes = 64u << 20;
  int read_threads = 8;
  // PinWindow: blocks pinned for the devices at once, the most pinned at a time,
  // and the threads pinning them.
  uint64_t pin_block_bytes = uint64_t{512} << 20;
  uint64_t pin_window_bytes = uint64_t{4} << 30;
  int pin_threads = 4;
  bool pin_sources = false;  // --pin-path-sources: no PinWindow without it
  // Segments outside the page cache: with `direct_cold_reads`, read with O_DIRECT
  // where the segment fits `direct_buffer_bytes` (one such buffer per read thread,
  // while the load reads), in requests of `direct_piece_bytes`, `direct_in_flight`
  // at once per reader; otherwise through the page cache.
  bool direct_cold_reads = false;
  uint64_t direct_buffer_bytes = 128u << 20;
  uint64_t direct_piece_bytes = 8u << 20;
  int direct_in_flight = 2;
  safetensors::ParseLimits limits;
};

// Every shard's header alone (a path load that asks its peers first).
absl::StatusOr<std::vector<ShardInput>> ReadCheckpointHeaders(const CheckpointFiles& files,
                                                              const safetensors::ParseLimits& limits);

void RunPathLoad(std::shared_ptr<LoadJob> job, const CheckpointFiles& files,
                 const SourceHooks& hooks, const PathSourceOptions& options = {});

}  // namespace weightd
