#include "services/sources/path_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "base/unique_fd.h"
#include "services/safetensors/parser.h"

namespace weightd {
namespace {

absl::Status ReadFully(int fd, uint64_t offset, size_t size, std::string* out, const std::string& file) {
  out->resize(size);
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd, out->data() + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::InternalError(absl::StrCat("reading '", file, "': ", std::strerror(errno)));
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  out->resize(done);
  return absl::OkStatus();
}

struct ShardFile {
  std::string file;
  UniqueFd fd;
  std::unique_ptr<safetensors::ShardParser> parser;
};

// Header phase: 8 bytes, then exactly the header, so no data byte is read twice.
absl::Status ReadHeader(const CheckpointFiles& files, const safetensors::ParseLimits& limits, ShardFile& shard) {
  WEIGHTD_ASSIGN_OR_RETURN(shard.fd, OpenShard(files, shard.file));
  struct stat st;
  if (::fstat(shard.fd.get(), &st) != 0) return absl::InternalError(absl::StrCat("stat '", shard.file, "'"));
  shard.parser = std::make_unique<safetensors::ShardParser>(shard.file, limits,
                                                            static_cast<uint64_t>(st.st_size));
  std::string buf;
  uint64_t offset = 0;
  while (!shard.parser->header_complete()) {
    size_t want = offset < 8 ? 8 : static_cast<size_t>(std::min<uint64_t>(1u << 20, static_cast<uint64_t>(st.st_size) - offset));
    WEIGHTD_RETURN_IF_ERROR(ReadFully(shard.fd.get(), offset, want, &buf, shard.file));
    if (buf.empty()) break;
    WEIGHTD_ASSIGN_OR_RETURN(size_t used, shard.parser->FeedHeader(buf));
    offset += used;
    if (used == 0) break;
  }
  if (!shard.parser->header_complete()) {
    return absl::InvalidArgumentError(absl::StrCat("shard '", shard.file, "': file ends inside its header (",
                                                   st.st_size, " bytes)"));
  }
  return absl::OkStatus();
}

absl::Status StreamData(ShardFile& shard, ShardWriter& writer, LoadJob& job,
                        const SourceHooks& hooks, size_t chunk_bytes) {
  std::string buf;
  uint64_t offset = shard.parser->position();
  for (;;) {
    if (job.failed()) return job.status();
    WEIGHTD_RETURN_IF_ERROR(ReadFully(shard.fd.get(), offset, chunk_bytes, &buf, shard.file));
    if (buf.empty()) break;
    offset += buf.size();
    if (hooks.received) hooks.received(buf.size());
    WEIGHTD_RETURN_IF_ERROR(shard.parser->FeedData(buf, writer));
    if (hooks.progress) hooks.progress();
  }
  return shard.parser->Finish(writer);
}

absl::Status CheckWeightMap(const CheckpointFiles& files, const std::vector<ShardFile>& shards) {
  if (files.weight_map.empty()) return absl::OkStatus();
  size_t seen = 0;
  for (const ShardFile& s : shards) {
    for (const auto& t : s.parser->header().tensors) {
      auto it = files.weight_map.find(t.name);
      if (it == files.weight_map.end() || it->second != s.file) {
        return absl::InvalidArgumentError(absl::StrCat(
            "model.safetensors.index.json: tensor '", t.name, "' is in shard '", s.file, "' but the index ",
            it == files.weight_map.end() ? std::string("does not list it") : "puts it in '" + it->second + "'"));
      }
      ++seen;
    }
  }
  if (seen != files.weight_map.size()) {
    return absl::InvalidArgumentError(absl::StrCat("model.safetensors.index.json lists ", files.weight_map.size(),
                                                   " tensors, the shards hold ", seen));
  }
  return absl::OkStatus();
}

}  // namespace

void RunPathLoad(std::shared_ptr<LoadJob> job, const CheckpointFiles& files, const SourceHooks& hooks,
                 const PathSourceOptions& options) {
  job->ExpectShards(files.shards, files.config_json);
  std::vector<ShardFile> shards(files.shards.size());
  for (size_t i = 0; i < shards.size(); ++i) {
    shards[i].file = files.shards[i];
    absl::Status s = ReadHeader(files, options.limits, shards[i]);
    if (!s.ok()) {
      job->Fail(s);
      return;
    }
    if (hooks.received) hooks.received(shards[i].parser->position());  // 8 + header: push counts them too
  }
  absl::Status map_ok = CheckWeightMap(files, shards);
  if (!map_ok.ok()) {
    job->Fail(map_ok);
    return;
  }
  std::mutex mu;
  std::condition_variable cv;
  size_t resumed = 0;
  size_t offered = 0;
  for (ShardFile& s : shards) {
    ++offered;
    job->OnShardHeader(s.file, s.parser->header(), [&](absl::Status) {
      std::lock_guard<std::mutex> lock(mu);
      ++resumed;
      cv.notify_all();
    });
    if (job->failed()) break;
  }
  {
    // Every offered header is answered exactly once; the callbacks use this frame.
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return resumed == offered; });
  }
  if (job->failed()) return;

  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i = next++; i < shards.size(); i = next++) {
      ShardWriter* writer = job->Writer(shards[i].file);
      if (writer == nullptr) return;
      absl::Status s = StreamData(shards[i], *writer, *job, hooks, options.chunk_bytes);
      job->OnShardDone(shards[i].file, s);
    }
  };
  int threads = std::max(1, std::min<int>(options.parallel_shards, static_cast<int>(shards.size())));
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (std::thread& t : pool) t.join();
}

}  // namespace weightd
