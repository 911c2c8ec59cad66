// One safetensors file opened for positioned reads: the header is read and
// validated up front (exactly its bytes, nothing of the data section), then
// tensors are read piece by piece with pread, so that offline commands stream a
// checkpoint instead of holding it. Thread-safe once opened (pread only).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "base/unique_fd.h"
#include "services/safetensors/header.h"

namespace weightd::ctl {

class ShardReader {
 public:
  // `name` (the file name) appears in messages. NOT_FOUND if it cannot be opened,
  // INVALID_ARGUMENT / DATA_LOSS for a malformed or truncated file.
  static absl::StatusOr<ShardReader> Open(const std::string& path, const std::string& name);

  const std::string& name() const { return name_; }
  const safetensors::ShardHeader& header() const { return header_; }
  // `size` bytes at byte `offset` of tensor `t`'s data (bounds already checked by
  // the header's validation; a short read is DATA_LOSS).
  absl::Status Read(const safetensors::TensorHeader& t, uint64_t offset, uint64_t size, void* out) const;

 private:
  ShardReader(std::string name, UniqueFd fd) : name_(std::move(name)), fd_(std::move(fd)) {}

  std::string name_;
  UniqueFd fd_;
  safetensors::ShardHeader header_;
};

}  // namespace weightd::ctl
