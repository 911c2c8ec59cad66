#include "services/sources/path_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "base/seconds_since.h"
#include "base/status_macros.h"
#include "base/unique_fd.h"
#include "kernels/quantize_fast.h"
#include "services/safetensors/parser.h"
#include "services/sources/direct_read.h"
#include "services/sources/mapped_file.h"
#include "services/sources/pin_window.h"

namespace weightd {
namespace {

// The pieces a segment outside the page cache is read in before it is used.
constexpr uint64_t kWarmPiece = uint64_t{4} << 20;
// Segments found outside the page cache, and those of them read past it with
// O_DIRECT (debug log of each load).
std::atomic<uint64_t> cold_segments{0};
std::atomic<uint64_t> direct_segments{0};

// Reads up to `size` bytes at `offset` into `out`; `*got` is how many arrived
// (fewer only at the end of the file).
absl::Status ReadInto(int fd, uint64_t offset, size_t size, char* out, size_t* got, const std::string& file) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd, out + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return absl::InternalError(
          absl::StrCat("reading '", file, "' at byte offset ", offset + done, ": ", std::strerror(errno)));
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  *got = done;
  return absl::OkStatus();
}

absl::Status ReadFully(int fd, uint64_t offset, size_t size, std::string* out, const std::string& file) {
  out->resize(size);
  size_t got = 0;
  WEIGHTD_RETURN_IF_ERROR(ReadInto(fd, offset, size, out->data(), &got, file));
  out->resize(got);
  return absl::OkStatus();
}

struct ShardFile {
  std::string file;
  UniqueFd fd;
  uint64_t file_size = 0;
  std::unique_ptr<safetensors::ShardParser> parser;
  MappedFile map;  // the whole file, once its header is read
  std::optional<DirectFile> direct;  // the same file opened with O_DIRECT, where cold reads use it
};

// Header phase: 8 bytes, then exactly the header, so no data byte is read twice.
absl::Status ReadHeader(const CheckpointFiles& files, const safetensors::ParseLimits& limits, ShardFile& shard) {
  WEIGHTD_ASSIGN_OR_RETURN(shard.fd, OpenShard(files, shard.file));
  struct stat st;
  if (::fstat(shard.fd.get(), &st) != 0) return absl::InternalError(absl::StrCat("stat '", shard.file, "'"));
  shard.file_size = static_cast<uint64_t>(st.st_size);
  shard.parser = std::make_unique<safetensors::ShardParser>(shard.file, limits, shard.file_size);
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

// Tensors [first, last) of one shard, read by one thread; or, for a large tensor
// that is stored unchanged, bytes [byte_begin, byte_end) of tensor `first` alone
// (its pieces land at independent offsets, so several threads share it).
struct Segment {
  size_t shard = 0;
  size_t first = 0, last = 0;
  uint64_t byte_begin = 0, byte_end = UINT64_MAX;
};

std::vector<Segment> CutSegments(const std::vector<ShardFile>& shards, const LoadJob& job, uint64_t segment_bytes) {
  std::vector<Segment> segments;
  for (size_t s = 0; s < shards.size(); ++s) {
    const auto& tensors = shards[s].parser->header().tensors;
    Segment current{s, 0, 0};
    uint64_t bytes = 0;
    auto close = [&](size_t next) {
      if (current.last > current.first) segments.push_back(current);
      current = Segment{s, next, next};
      bytes = 0;
    };
    for (size_t t = 0; t < tensors.size(); ++t) {
      const uint64_t size = tensors[t].size();
      if (size > segment_bytes && job.StreamsTensor(shards[s].file, t)) {
        close(t);
        for (uint64_t begin = 0; begin < size; begin += segment_bytes) {
          segments.push_back(Segment{s, t, t + 1, begin, std::min(size, begin + segment_bytes)});
        }
        current = Segment{s, t + 1, t + 1};
        continue;
      }
      current.last = t + 1;
      bytes += size;
      if (bytes >= segment_bytes) close(t + 1);
    }
    close(tensors.size());
  }
  // Every shard is done once, after its last segment: a shard without tensors gets an empty one.
  std::vector<bool> has_segment(shards.size(), false);
  for (const Segment& segment : segments) has_segment[segment.shard] = true;
  for (size_t s = 0; s < shards.size(); ++s) {
    if (!has_segment[s]) segments.push_back(Segment{s, 0, 0});
  }
  return segments;
}

absl::Status ShortRead(const ShardFile& shard, const safetensors::TensorHeader& t, uint64_t end_offset) {
  const safetensors::ShardHeader& header = shard.parser->header();
  return absl::DataLossError(absl::StrCat("shard '", shard.file, "': tensor '", t.name, "': the file ends at byte offset ",
                                          end_offset, ", inside the tensor's bytes [", header.data_start() + t.begin,
                                          ", ", header.data_start() + t.end, ")"));
}

// A segment whose file ends at byte offset `file_end`: DATA_LOSS naming its first
// tensor that goes past it; OK if none does.
absl::Status CheckSegmentEnd(const ShardFile& shard, const Segment& segment, uint64_t file_end) {
  const safetensors::ShardHeader& header = shard.parser->header();
  for (size_t i = segment.first; i < segment.last; ++i) {
    const safetensors::TensorHeader& t = header.tensors[i];
    if (header.data_start() + t.end > file_end) return ShortRead(shard, t, file_end);
  }
  return absl::OkStatus();
}

// The file bytes [begin, end) of a segment.
std::pair<uint64_t, uint64_t> SegmentBytes(const ShardFile& shard, const Segment& segment) {
  const safetensors::ShardHeader& header = shard.parser->header();
  if (segment.last == segment.first) return {0, 0};
  const safetensors::TensorHeader& first = header.tensors[segment.first];
  const safetensors::TensorHeader& last = header.tensors[segment.last - 1];
  const uint64_t begin = header.data_start() + first.begin + segment.byte_begin;
  const uint64_t end = header.data_start() + std::min(last.end, segment.byte_end == UINT64_MAX
                                                                    ? last.end
                                                                    : first.begin + segment.byte_end);
  return {begin, end};
}

// A cold segment read through the page cache: all of it requested at once, then
// pread in pieces (a disk error is a status naming the file and offset, not a
// SIGBUS when the mapping is touched). The caller drops its pages once it has landed.
absl::Status ReadThroughPageCache(ShardFile& shard, const Segment& segment, uint64_t begin, uint64_t end,
                                  LoadJob& job) {
  shard.map.WillNeed(begin, end - begin);
  thread_local std::vector<char> scratch(kWarmPiece);
  for (uint64_t at = begin; at < end; at += kWarmPiece) {
    if (job.failed()) return job.status();
    const size_t want = static_cast<size_t>(std::min<uint64_t>(kWarmPiece, end - at));
    size_t got = 0;
    WEIGHTD_RETURN_IF_ERROR(ReadInto(shard.fd.get(), at, want, scratch.data(), &got, shard.file));
    if (got < want) WEIGHTD_RETURN_IF_ERROR(CheckSegmentEnd(shard, segment, at + got));
  }
  return absl::OkStatus();
}

// A segment's tensors as views of the mapped file, or, for a segment outside the
// page cache read with O_DIRECT, of the reader's buffer: tensors that are gathered
// (quantized, or sliced off dim 0) whole, others in pieces of `chunk_bytes`. Its
// blocks that the PinWindow has pinned by now (where the backend pins sources) are
// copied by the GPU from the page cache in place, the rest through the staging ring.
absl::Status ReadSegment(ShardFile& shard, const Segment& segment, size_t index, PinWindow& window,
                         ShardWriter& writer, LoadJob& job, const SourceHooks& hooks,
                         const PathSourceOptions& options, DirectBuffer& buffer) {
  window.Start(index);  // pins go ahead of what is being read
  const safetensors::ShardHeader& header = shard.parser->header();
  const auto [begin, end] = SegmentBytes(shard, segment);
  // The parser bounds tensors by the file's size; a file that shrank since is caught here.
  if (end > shard.map.size()) WEIGHTD_RETURN_IF_ERROR(CheckSegmentEnd(shard, segment, shard.map.size()));
  // A segment not in the page cache is read from disk once: with O_DIRECT into the
  // reader's buffer where the file allows it and the segment fits the buffer, else
  // through the page cache (its pages dropped again once it has landed).
  const bool cold = end > begin && !shard.map.Cached(begin, end - begin);
  const char* direct = nullptr;  // the segment's first byte in `buffer`
  if (cold) {
    ++cold_segments;
    if (shard.direct && end - begin <= options.direct_buffer_bytes) {
      auto read = shard.direct->ReadRange(begin, end - begin, buffer, options.direct_piece_bytes,
                                          options.direct_in_flight);
      if (!read.ok()) return read.status();
      if (read->got < end - begin) WEIGHTD_RETURN_IF_ERROR(CheckSegmentEnd(shard, segment, begin + read->got));
      direct = read->bytes;
      ++direct_segments;
    } else {
      WEIGHTD_RETURN_IF_ERROR(ReadThroughPageCache(shard, segment, begin, end, job));
    }
  }
  auto view = [&, first = begin](uint64_t at, uint64_t n) {
    return direct != nullptr ? std::string_view(direct + (at - first), n) : shard.map.view(at, n);
  };
  // Once its copies are issued, the segment lets its blocks go (unpinned when their
  // last segment is done); a segment read cold through the page cache is dropped again.
  struct Done {
    PinWindow& window;
    size_t index;
    const MappedFile& map;
    bool drop;
    uint64_t begin, end;
    ~Done() {
      window.Release(index);
      if (drop) map.Drop(begin, end - begin);
    }
  };
  Done done{window, index, shard.map, cold && direct == nullptr, begin, end};
  for (size_t i = segment.first; i < segment.last; ++i) {
    const safetensors::TensorHeader& t = header.tensors[i];
    const uint64_t at = header.data_start() + t.begin;
    if (segment.byte_begin == 0 && !job.StreamsTensor(shard.file, i)) {
      if (job.failed()) return job.status();
      const std::string_view whole = view(at, t.size());
      if (hooks.received) hooks.received(whole.size());
      WEIGHTD_RETURN_IF_ERROR(writer.OnWholeTensor(i, whole));
      if (hooks.progress) hooks.progress();
      continue;
    }
    const uint64_t tensor_end = std::min(t.size(), segment.byte_end);
    for (uint64_t offset = segment.byte_begin; offset < tensor_end;) {
      if (job.failed()) return job.status();
      const uint64_t want = std::min<uint64_t>(options.chunk_bytes, tensor_end - offset);
      if (hooks.received) hooks.received(want);
      WEIGHTD_RETURN_IF_ERROR(writer.OnTensorBytes(i, offset, view(at + offset, want)));
      if (hooks.progress) hooks.progress();
      offset += want;
    }
    if (tensor_end == t.size()) WEIGHTD_RETURN_IF_ERROR(writer.OnTensorComplete(i));  // once: by its last piece
  }
  return absl::OkStatus();
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

absl::StatusOr<std::vector<ShardInput>> ReadCheckpointHeaders(const CheckpointFiles& files,
                                                              const safetensors::ParseLimits& limits) {
  std::vector<ShardInput> out;
  for (const std::string& file : files.shards) {
    ShardFile shard;
    shard.file = file;
    WEIGHTD_RETURN_IF_ERROR(ReadHeader(files, limits, shard));
    out.push_back(ShardInput{file, shard.parser->header()});
  }
  return out;
}

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
    auto map = MappedFile::Map(shards[i].fd.get(), shards[i].file_size, shards[i].file);
    if (!map.ok()) {
      job->Fail(map.status());
      return;
    }
    shards[i].map = std::move(*map);
    if (options.direct_cold_reads) {
      auto direct = DirectFile::Open(shards[i].fd.get(), shards[i].file);
      if (direct.ok()) shards[i].direct = std::move(*direct);  // else: cold segments go through the page cache
    }
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

  // Segments of every shard; a shard is done when its last segment is.
  const std::vector<Segment> segments = CutSegments(shards, *job, options.segment_bytes);
  std::vector<size_t> remaining(shards.size(), 0);
  std::vector<absl::Status> shard_status(shards.size());
  for (const Segment& segment : segments) ++remaining[segment.shard];
  std::vector<const MappedFile*> maps;
  for (const ShardFile& s : shards) maps.push_back(&s.map);
  std::vector<PinWindow::Range> ranges;
  for (const Segment& segment : segments) {
    const auto [begin, end] = SegmentBytes(shards[segment.shard], segment);
    ranges.push_back({segment.shard, begin, std::min(end, shards[segment.shard].map.size())});
  }
  PinWindow window(job->backend(), std::move(maps), ranges, options.pin_block_bytes, options.pin_window_bytes,
                   options.pin_sources ? options.pin_threads : 0);
  std::atomic<size_t> next{0};
  const int threads = std::max(1, std::min<int>(options.read_threads, static_cast<int>(segments.size())));
  auto worker = [&] {
    // The readers' scale passes share the cores from the first one (one thread each on
    // as many cores as readers: measured faster than passes that take more).
    const kernels::ConcurrentCallers share(threads);
    DirectBuffer buffer;  // this reader's cold segments read with O_DIRECT; freed when the load's reads are done
    for (size_t i = next++; i < segments.size(); i = next++) {
      const Segment& segment = segments[i];
      ShardFile& shard = shards[segment.shard];
      ShardWriter* writer = job->Writer(shard.file);
      absl::Status s = writer == nullptr ? job->status()
                                         : ReadSegment(shard, segment, i, window, *writer, *job, hooks, options, buffer);
      bool last = false;
      absl::Status done;
      {
        std::lock_guard<std::mutex> lock(mu);
        if (shard_status[segment.shard].ok()) shard_status[segment.shard] = s;
        last = --remaining[segment.shard] == 0;
        done = shard_status[segment.shard];
      }
      if (!s.ok() && !job->failed()) job->Fail(s);
      if (last) job->OnShardDone(shard.file, done);
    }
  };
  const uint64_t cold_before = cold_segments.load(), direct_before = direct_segments.load();
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (std::thread& t : pool) t.join();
  const PinWindow::Stats pins = window.stats();
  LogEvent(LogLevel::kDebug, "path_read",
           {{"model", job->model_id()}, {"threads", threads}, {"segments", segments.size()},
            {"seconds", SecondsSince(start)},
            {"pinned_blocks", pins.pinned_blocks}, {"pinned_bytes", pins.pinned_bytes},
            {"passed_blocks", pins.passed_blocks}, {"pin_seconds_all_threads", pins.pin_seconds},
            {"unpin_seconds_all_threads", pins.unpin_seconds}, {"cold_segments", cold_segments.load() - cold_before},
            {"direct_segments", direct_segments.load() - direct_before}});
}

}  // namespace weightd
