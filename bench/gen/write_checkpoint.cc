#include "bench/gen/write_checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <span>
#include <string_view>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "base/unique_fd.h"
#include "bench/gen/shard_bytes.h"
#include "nlohmann/json.hpp"

namespace weightd::bench {
namespace {

using kernels::DType;

absl::StatusOr<DType> DtypeOf(const GenOptions& options, size_t tensor_index) {
  if (options.mixed_dtypes) {
    constexpr DType kCycle[] = {DType::kBF16, DType::kF16, DType::kF32};
    return kCycle[tensor_index % 3];
  }
  if (options.dtype == DType::kF8E4M3) {
    return absl::InvalidArgumentError("synthetic checkpoints are BF16, F16 or F32, not F8_E4M3");
  }
  return options.dtype;
}

std::string ShardFileName(int shard, int shards) {
  if (shards == 1) return "model.safetensors";
  return absl::StrFormat("model-%05d-of-%05d.safetensors", shard + 1, shards);
}

// Shard of each tensor: the shard its byte midpoint falls in when the checkpoint is
// cut into equal byte ranges, then nudged so that shard numbers rise by at most one
// per tensor and the last tensors still reach the last shard, leaving none empty.
// Requires total > 0 and 1 <= shards <= sizes.size().
std::vector<int> AssignShards(const std::vector<uint64_t>& sizes, uint64_t total, int shards) {
  const int64_t n = static_cast<int64_t>(sizes.size());
  std::vector<int> out(sizes.size());
  uint64_t before = 0;
  int previous = 0;
  for (int64_t i = 0; i < n; ++i) {
    // Integers, doubled to keep the midpoint exact: the same split on every platform.
    using U128 = unsigned __int128;
    const U128 twice_mid = 2 * U128{before} + sizes[i];
    int64_t want =
        static_cast<int64_t>(twice_mid * static_cast<unsigned>(shards) / (2 * U128{total}));
    want = std::min<int64_t>(want, shards - 1);
    int64_t s = i == 0 ? 0 : std::clamp<int64_t>(want, previous, previous + 1);
    s = std::max<int64_t>(s, shards - (n - i));
    out[i] = static_cast<int>(s);
    previous = out[i];
    before += sizes[i];
  }
  return out;
}

// Takes no arguments that need building, so errno is read before anything can
// overwrite it.
absl::Status ErrnoStatus(std::string_view what, std::string_view path) {
  const int error = errno;
  return absl::ErrnoToStatus(error, absl::StrCat(std::string(what), " ", std::string(path)));
}

absl::Status WriteAll(int fd, std::span<const uint8_t> bytes, const std::string& path) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("write", path);
    bytes = bytes.subspan(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status WriteAll(int fd, std::string_view text, const std::string& path) {
  return WriteAll(fd, {reinterpret_cast<const uint8_t*>(text.data()), text.size()}, path);
}

// Writes `path` through a temporary name so that an interrupted run never leaves a
// truncated file under a final name.
template <typename WriteBody>
absl::Status WriteFileAtomically(const std::string& path, WriteBody&& body) {
  const std::string tmp = path + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd.valid()) return ErrnoStatus("open", tmp);
  absl::Status status = body(fd.get(), tmp);
  if (status.ok() && ::close(fd.release()) != 0) {
    status = ErrnoStatus("close", tmp);
  }
  if (status.ok() && std::rename(tmp.c_str(), path.c_str()) != 0) {
    status = ErrnoStatus("rename", tmp);
  }
  if (!status.ok()) {
    fd.reset();
    ::unlink(tmp.c_str());
  }
  return status;
}

absl::Status WriteTextFile(const std::string& path, const std::string& text) {
  return WriteFileAtomically(
      path, [&](int fd, const std::string& tmp) { return WriteAll(fd, text, tmp); });
}

absl::Status WriteShard(const GenOptions& options, const CheckpointPlan& plan, int shard,
                        std::vector<uint8_t>& buffer) {
  const std::string path = (std::filesystem::path(options.out_dir) / plan.files[shard]).string();
  return WriteFileAtomically(path, [&](int fd, const std::string& tmp) -> absl::Status {
    ShardByteSource source(options, plan, shard);
    while (const size_t n = source.Read(buffer)) {
      WEIGHTD_RETURN_IF_ERROR(WriteAll(fd, std::span<const uint8_t>(buffer.data(), n), tmp));
    }
    return absl::OkStatus();
  });
}

std::string IndexJson(const CheckpointPlan& plan) {
  nlohmann::ordered_json index;
  index["metadata"] = {{"total_size", plan.total_bytes}};
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  for (const PlannedTensor& t : plan.tensors) weight_map[t.desc.name] = plan.files[t.shard];
  index["weight_map"] = std::move(weight_map);
  return index.dump(2) + "\n";
}

}  // namespace

absl::StatusOr<CheckpointPlan> PlanCheckpoint(const GenOptions& options) {
  WEIGHTD_RETURN_IF_ERROR(ValidateLlamaConfig(options.config));
  if (options.out_dir.empty()) return absl::InvalidArgumentError("no output directory given");
  std::vector<TensorDesc> descs = LlamaTensors(options.config);
  if (options.shards < 1 || static_cast<size_t>(options.shards) > descs.size()) {
    return absl::InvalidArgumentError(absl::StrCat("shards must be between 1 and ", descs.size(),
                                                   " (one tensor per shard), got ",
                                                   options.shards));
  }
  CheckpointPlan plan;
  std::vector<uint64_t> sizes;
  for (size_t i = 0; i < descs.size(); ++i) {
    WEIGHTD_ASSIGN_OR_RETURN(const DType dtype, DtypeOf(options, i));
    const uint64_t size = static_cast<uint64_t>(NumElements(descs[i])) * kernels::DTypeSize(dtype);
    plan.tensors.push_back({std::move(descs[i]), dtype, 0, 0, size});
    sizes.push_back(size);
    plan.total_bytes += size;
  }
  const std::vector<int> shard_of = AssignShards(sizes, plan.total_bytes, options.shards);
  std::vector<uint64_t> shard_bytes(static_cast<size_t>(options.shards), 0);
  for (size_t i = 0; i < plan.tensors.size(); ++i) {
    PlannedTensor& t = plan.tensors[i];
    t.shard = shard_of[i];
    t.byte_offset = shard_bytes[t.shard];
    shard_bytes[t.shard] += t.byte_size;
  }
  for (int s = 0; s < options.shards; ++s) plan.files.push_back(ShardFileName(s, options.shards));
  return plan;
}

absl::Status WriteCheckpoint(const GenOptions& options) {
  WEIGHTD_ASSIGN_OR_RETURN(const CheckpointPlan plan, PlanCheckpoint(options));
  std::error_code ec;
  std::filesystem::create_directories(options.out_dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("create directory ", options.out_dir, ": ", ec.message()));
  }
  const std::filesystem::path dir(options.out_dir);
  WEIGHTD_RETURN_IF_ERROR(WriteTextFile(
      (dir / "config.json").string(),
      LlamaConfigJson(options.config, options.mixed_dtypes ? DType::kBF16 : options.dtype)));
  std::vector<uint8_t> buffer(kFillPieceBytes);
  for (int s = 0; s < static_cast<int>(plan.files.size()); ++s) {
    WEIGHTD_RETURN_IF_ERROR(WriteShard(options, plan, s, buffer));
  }
  if (plan.files.size() > 1) {
    WEIGHTD_RETURN_IF_ERROR(
        WriteTextFile((dir / "model.safetensors.index.json").string(), IndexJson(plan)));
  }
  return absl::OkStatus();
}

}  // namespace weightd::bench
