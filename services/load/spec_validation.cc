#include "services/load/spec_validation.h"

#include <set>

#include "absl/strings/str_cat.h"

namespace weightd {
namespace {

constexpr size_t kMaxModelIdBytes = 256;

bool ValidModelIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == '/' || c == ':' || c == '@';
}

}  // namespace

absl::Status ValidateLoadSpec(const v1::LoadModelRequest& spec) {
  const std::string& id = spec.model_id();
  if (id.empty()) return absl::InvalidArgumentError("model_id is empty");
  if (id.size() > kMaxModelIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat("model_id is longer than ", kMaxModelIdBytes, " bytes"));
  }
  for (char c : id) {
    if (!ValidModelIdChar(c)) {
      return absl::InvalidArgumentError(
          absl::StrCat("model_id '", id, "' may hold only letters, digits and -_./:@"));
    }
  }
  const v1::ModelSource& source = spec.source();
  switch (source.kind_case()) {
    case v1::ModelSource::kPath:
      if (source.path().path().empty()) return absl::InvalidArgumentError("source.path.path is empty");
      break;
    case v1::ModelSource::kPush: {
      if (source.push().shard_files_size() == 0) {
        return absl::InvalidArgumentError("source.push.shard_files is empty");
      }
      std::set<std::string> seen;
      for (const std::string& f : source.push().shard_files()) {
        if (f.empty() || f.find('/') != std::string::npos) {
          return absl::InvalidArgumentError(absl::StrCat("source.push.shard_files: '", f, "' is not a file name"));
        }
        if (!seen.insert(f).second) {
          return absl::InvalidArgumentError(absl::StrCat("source.push.shard_files names '", f, "' twice"));
        }
      }
      break;
    }
    case v1::ModelSource::kPeer:
      return absl::UnimplementedError("peer sources are not available in this build");
    case v1::ModelSource::KIND_NOT_SET:
      return absl::InvalidArgumentError("source is not set (path or push)");
  }
  return absl::OkStatus();
}

}  // namespace weightd
