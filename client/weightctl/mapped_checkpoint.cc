#include "client/weightctl/mapped_checkpoint.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "base/unique_fd.h"
#include "services/safetensors/parser.h"

namespace weightd::ctl {
namespace fs = std::filesystem;

absl::StatusOr<std::unique_ptr<MappedCheckpoint>> MappedCheckpoint::Open(const std::string& path) {
  std::unique_ptr<MappedCheckpoint> checkpoint(new MappedCheckpoint());
  std::error_code ec;
  std::vector<fs::path> files;
  fs::path dir;
  if (fs::is_directory(path, ec)) {
    dir = path;
    for (const auto& entry : fs::directory_iterator(path, ec)) {
      if (absl::EndsWith(entry.path().filename().string(), ".safetensors")) files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    if (files.empty()) return absl::NotFoundError(absl::StrCat("no .safetensors file in ", path));
  } else if (fs::exists(path, ec)) {
    files.push_back(path);
    dir = fs::path(path).parent_path();
  } else {
    return absl::NotFoundError(absl::StrCat(path, " does not exist"));
  }
  for (const fs::path& file : files) {
    WEIGHTD_RETURN_IF_ERROR(checkpoint->MapShard(file.string(), file.filename().string()));
  }
  std::ifstream config(dir / "config.json", std::ios::binary);
  if (config) {
    std::stringstream text;
    text << config.rdbuf();
    checkpoint->config_json_ = text.str();
  }
  return checkpoint;
}

MappedCheckpoint::~MappedCheckpoint() {
  for (auto& [address, size] : mappings_) ::munmap(address, size);
}

absl::Status MappedCheckpoint::MapShard(const std::string& path, const std::string& name) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return absl::NotFoundError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return absl::InternalError(absl::StrCat("fstat ", path, ": ", std::strerror(errno)));
  size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) return absl::InvalidArgumentError(absl::StrCat(name, ": empty file"));
  void* address = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd.get(), 0);
  if (address == MAP_FAILED) return absl::InternalError(absl::StrCat("mmap ", path, ": ", std::strerror(errno)));
  mappings_.emplace_back(address, size);
  const char* bytes = static_cast<const char*>(address);

  safetensors::ShardParser parser(name, safetensors::ParseLimits(), size);
  WEIGHTD_ASSIGN_OR_RETURN(size_t consumed, parser.FeedHeader(std::string_view(bytes, size)));
  (void)consumed;
  if (!parser.header_complete()) return absl::DataLossError(absl::StrCat(name, ": truncated header"));
  const safetensors::ShardHeader& header = parser.header();
  if (header.file_size() != size) {
    return absl::DataLossError(absl::StrCat(name, ": header declares ", header.file_size(), " bytes, file has ", size));
  }
  for (const safetensors::TensorHeader& tensor : header.tensors) {
    MappedTensor mapped{tensor, reinterpret_cast<const uint8_t*>(bytes + header.data_start() + tensor.begin), name};
    if (!tensors_.emplace(tensor.name, std::move(mapped)).second) {
      return absl::InvalidArgumentError(absl::StrCat("tensor ", tensor.name, " appears in two shards (", name, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace weightd::ctl
