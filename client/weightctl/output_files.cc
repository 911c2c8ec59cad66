#include "client/weightctl/output_files.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace weightd::ctl {
namespace fs = std::filesystem;

std::string BuildIndexJson(const std::string& input_index_json, const std::map<std::string, std::string>& weight_map,
                           uint64_t total_size) {
  nlohmann::json metadata = nlohmann::json::object();
  if (!input_index_json.empty()) {
    nlohmann::json input = nlohmann::json::parse(input_index_json, nullptr, /*allow_exceptions=*/false);
    if (input.is_object() && input.contains("metadata") && input["metadata"].is_object()) {
      metadata = input["metadata"];
    }
  }
  metadata["total_size"] = total_size;
  nlohmann::json index = {{"metadata", metadata}, {"weight_map", weight_map}};
  return index.dump(2) + "\n";
}

absl::Status WriteTextFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> CopySmallFiles(const std::string& from, const std::string& to,
                                                        const std::vector<std::string>& skip) {
  std::vector<std::string> copied;
  std::error_code ec;
  const fs::path root(from);
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (it->is_directory(ec)) {
      // The output may lie inside the input: never copy it into itself.
      if (absl::StartsWith(name, ".") || fs::equivalent(it->path(), to, ec)) it.disable_recursion_pending();
      continue;
    }
    const bool checkpoint_file = it.depth() == 0 && (absl::EndsWith(name, ".safetensors") ||
                                                     std::find(skip.begin(), skip.end(), name) != skip.end());
    if (checkpoint_file || !it->is_regular_file(ec) || it->file_size(ec) >= kMaxCopiedFileBytes) continue;
    const fs::path relative = it->path().lexically_relative(root);
    const fs::path target = fs::path(to) / relative;
    fs::create_directories(target.parent_path(), ec);
    if (ec || !fs::copy_file(it->path(), target, fs::copy_options::overwrite_existing, ec)) {
      return absl::InternalError(absl::StrCat("copy ", it->path().string(), ": ", ec.message()));
    }
    copied.push_back(relative.string());
  }
  if (ec) return absl::InternalError(absl::StrCat("list ", from, ": ", ec.message()));
  std::sort(copied.begin(), copied.end());
  return copied;
}

}  // namespace weightd::ctl
