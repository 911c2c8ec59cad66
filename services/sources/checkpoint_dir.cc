#include "services/sources/checkpoint_dir.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"

namespace weightd {
namespace {

absl::StatusOr<std::string> RealPath(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) == nullptr) {
    return absl::NotFoundError(absl::StrCat("'", path, "' does not exist"));
  }
  return std::string(buf);
}

bool ReadSmallFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos && name != "." && name != "..";
}

}  // namespace

absl::StatusOr<std::map<std::string, std::string>> ParseWeightMap(const std::string& index_json) {
  nlohmann::json index = nlohmann::json::parse(index_json, nullptr, /*allow_exceptions=*/false);
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
    return absl::InvalidArgumentError(
        "model.safetensors.index.json: expected a JSON object with a \"weight_map\" object");
  }
  std::map<std::string, std::string> map;
  for (const auto& [name, file] : index["weight_map"].items()) {
    if (!file.is_string() || !IsPlainFileName(file.get<std::string>()) ||
        !absl::EndsWith(file.get<std::string>(), ".safetensors")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model.safetensors.index.json: weight_map entry '", name,
          "' must name a .safetensors file in the same directory"));
    }
    map[name] = file.get<std::string>();
  }
  if (map.empty()) return absl::InvalidArgumentError("model.safetensors.index.json: weight_map is empty");
  return map;
}

absl::StatusOr<CheckpointFiles> FindCheckpoint(const std::string& model_root, const std::string& path) {
  if (model_root.empty()) {
    return absl::FailedPreconditionError("path sources are off: start weightd with --model-root");
  }
  if (path.empty()) return absl::InvalidArgumentError("source.path is empty");
  WEIGHTD_ASSIGN_OR_RETURN(std::string root, RealPath(model_root));
  std::string joined = path[0] == '/' ? path : absl::StrCat(root, "/", path);
  WEIGHTD_ASSIGN_OR_RETURN(std::string real, RealPath(joined));
  if (real != root && !absl::StartsWith(real, root + "/")) {
    return absl::InvalidArgumentError(absl::StrCat("path '", path, "' is outside the model root"));
  }
  struct stat st;
  if (::stat(real.c_str(), &st) != 0) return absl::NotFoundError(absl::StrCat("'", path, "' does not exist"));

  CheckpointFiles files;
  if (S_ISREG(st.st_mode)) {
    if (!absl::EndsWith(real, ".safetensors")) {
      return absl::InvalidArgumentError(absl::StrCat("'", path, "' is not a .safetensors file"));
    }
    size_t slash = real.rfind('/');
    files.dir = real.substr(0, slash);
    files.shards.push_back(real.substr(slash + 1));
  } else if (S_ISDIR(st.st_mode)) {
    files.dir = real;
    std::string index_json;
    if (ReadSmallFile(real + "/model.safetensors.index.json", &index_json)) {
      WEIGHTD_ASSIGN_OR_RETURN(files.weight_map, ParseWeightMap(index_json));
      std::set<std::string> shards;
      for (const auto& [name, file] : files.weight_map) shards.insert(file);
      files.shards.assign(shards.begin(), shards.end());
    } else if (::access((real + "/model.safetensors").c_str(), R_OK) == 0) {
      files.shards.push_back("model.safetensors");
    } else {
      DIR* d = ::opendir(real.c_str());
      if (d != nullptr) {
        while (dirent* ent = ::readdir(d)) {
          std::string name = ent->d_name;
          if (absl::EndsWith(name, ".safetensors")) files.shards.push_back(name);
        }
        ::closedir(d);
      }
      std::sort(files.shards.begin(), files.shards.end());
    }
    if (files.shards.empty()) {
      return absl::NotFoundError(absl::StrCat("no .safetensors files in '", path, "'"));
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat("'", path, "' is neither a file nor a directory"));
  }
  for (const std::string& shard : files.shards) {
    if (::access((files.dir + "/" + shard).c_str(), R_OK) != 0) {
      return absl::NotFoundError(absl::StrCat("shard '", shard, "' named by the index is missing"));
    }
  }
  ReadSmallFile(files.dir + "/config.json", &files.config_json);
  return files;
}

}  // namespace weightd
