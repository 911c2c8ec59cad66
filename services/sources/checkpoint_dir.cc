#include "services/sources/checkpoint_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "services/sources/confined_path.h"

namespace weightd {
namespace {

std::string Join(const std::string& dir, const std::string& name) {
  return dir == "." ? name : absl::StrCat(dir, "/", name);
}

// NOT_FOUND when absent; INVALID_ARGUMENT beyond `limit` bytes.
absl::StatusOr<std::string> ReadSmallFile(const CheckpointFiles& files, const std::string& name, size_t limit) {
  WEIGHTD_ASSIGN_OR_RETURN(UniqueFd fd, OpenBeneath(files.root, Join(files.relative_dir, name), O_RDONLY));
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::PermissionDeniedError(absl::StrCat("cannot read '", name, "'"));
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > limit) {
      return absl::InvalidArgumentError(absl::StrCat("'", name, "' is larger than ", limit, " bytes"));
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> ListShards(const CheckpointFiles& files) {
  WEIGHTD_ASSIGN_OR_RETURN(UniqueFd fd, OpenBeneath(files.root, files.relative_dir, O_RDONLY | O_DIRECTORY));
  DIR* d = ::fdopendir(fd.release());
  if (d == nullptr) return absl::PermissionDeniedError(absl::StrCat("cannot list '", files.relative_dir, "'"));
  std::vector<std::string> shards;
  while (dirent* ent = ::readdir(d)) {
    std::string name = ent->d_name;
    if (absl::EndsWith(name, ".safetensors")) shards.push_back(name);
  }
  ::closedir(d);
  std::sort(shards.begin(), shards.end());
  return shards;
}

}  // namespace

absl::StatusOr<UniqueFd> OpenShard(const CheckpointFiles& files, const std::string& shard) {
  if (!IsPlainFileName(shard)) return absl::InvalidArgumentError(absl::StrCat("bad shard name '", shard, "'"));
  return OpenBeneath(files.root, Join(files.relative_dir, shard), O_RDONLY);
}

absl::StatusOr<CheckpointFiles> FindCheckpoint(const std::string& model_root, const std::string& path) {
  if (model_root.empty()) {
    return absl::FailedPreconditionError("path sources are off: start weightd with --model-root");
  }
  // Lexical first: a path that names something outside the root is refused the same
  // way whether or not it exists.
  WEIGHTD_ASSIGN_OR_RETURN(std::string relative, ConfinedRelativePath(model_root, path));
  WEIGHTD_ASSIGN_OR_RETURN(UniqueFd target, OpenBeneath(model_root, relative, O_PATH));
  struct stat st;
  if (::fstat(target.get(), &st) != 0) return absl::NotFoundError(absl::StrCat("'", path, "' does not exist"));

  CheckpointFiles files;
  files.root = model_root;
  std::string root_dir = model_root;
  while (root_dir.size() > 1 && root_dir.back() == '/') root_dir.pop_back();
  if (S_ISREG(st.st_mode)) {
    if (!absl::EndsWith(relative, ".safetensors")) {
      return absl::InvalidArgumentError(absl::StrCat("'", path, "' is not a .safetensors file"));
    }
    size_t slash = relative.rfind('/');
    files.relative_dir = slash == std::string::npos ? "." : relative.substr(0, slash);
    files.shards.push_back(slash == std::string::npos ? relative : relative.substr(slash + 1));
  } else if (S_ISDIR(st.st_mode)) {
    files.relative_dir = relative;
    auto index_json = ReadSmallFile(files, "model.safetensors.index.json", kMaxIndexBytes);
    if (index_json.ok()) {
      WEIGHTD_ASSIGN_OR_RETURN(files.weight_map, ParseWeightMap(*index_json));
      std::set<std::string> shards;
      for (const auto& [name, file] : files.weight_map) shards.insert(file);
      files.shards.assign(shards.begin(), shards.end());
    } else if (index_json.status().code() != absl::StatusCode::kNotFound) {
      return index_json.status();
    } else {
      WEIGHTD_ASSIGN_OR_RETURN(files.shards, ListShards(files));
      // A lone model.safetensors is the whole checkpoint, whatever else lies beside it.
      if (std::find(files.shards.begin(), files.shards.end(), "model.safetensors") != files.shards.end()) {
        files.shards = {"model.safetensors"};
      }
    }
    if (files.shards.empty()) {
      return absl::NotFoundError(absl::StrCat("no .safetensors files in '", path, "'"));
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat("'", path, "' is neither a file nor a directory"));
  }
  files.dir = files.relative_dir == "." ? root_dir : absl::StrCat(root_dir, "/", files.relative_dir);
  for (const std::string& shard : files.shards) {
    absl::StatusOr<UniqueFd> fd = OpenShard(files, shard);
    if (fd.status().code() == absl::StatusCode::kNotFound) {
      return absl::NotFoundError(absl::StrCat("shard '", shard, "' named by the index is missing"));
    }
    if (!fd.ok()) return fd.status();
  }
  auto config = ReadSmallFile(files, "config.json", kMaxIndexBytes);
  if (config.ok()) files.config_json = std::move(*config);
  return files;
}

}  // namespace weightd
