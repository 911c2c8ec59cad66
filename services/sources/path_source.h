// Drives a load from local safetensors files: reads every shard's header with
// exact-size reads, lets the job plan, then streams each shard's data section
// through the parser in fixed-size chunks (never a whole shard in memory),
// several shards in parallel. Runs on a loader thread; blocks until the load
// has finished or failed. Thread-safe (no shared state).
#pragma once

#include <memory>

#include "services/load/load_job.h"
#include "services/safetensors/header.h"
#include "services/sources/checkpoint_dir.h"
#include "services/sources/source_hooks.h"

namespace weightd {

struct PathSourceOptions {
  size_t chunk_bytes = 8u << 20;
  int parallel_shards = 4;
  safetensors::ParseLimits limits;
};

void RunPathLoad(std::shared_ptr<LoadJob> job, const CheckpointFiles& files,
                 const SourceHooks& hooks, const PathSourceOptions& options = {});

}  // namespace weightd
