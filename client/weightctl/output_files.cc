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
  for (const fs::directory_entry& entry : fs::directory_iterator(from, ec)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file(ec) || absl::EndsWith(name, ".safetensors") ||
        std::find(skip.begin(), skip.end(), name) != skip.end() || entry.file_size(ec) >= kMaxCopiedFileBytes) {
      continue;
    }
    if (!fs::copy_file(entry.path(), fs::path(to) / name, fs::copy_options::overwrite_existing, ec)) {
      return absl::InternalError(absl::StrCat("copy ", entry.path().string(), ": ", ec.message()));
    }
    copied.push_back(name);
  }
  if (ec) return absl::InternalError(absl::StrCat("list ", from, ": ", ec.message()));
  std::sort(copied.begin(), copied.end());
  return copied;
}

}  // namespace weightd::ctl
