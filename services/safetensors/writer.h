// Writes a safetensors file tensor by tensor: the header is built and written up
// front from the tensor specs, then the data section streams through Append
// without being held in memory. Files it writes pass ShardParser with default
// limits. Not thread-safe: one writer per file.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/unique_fd.h"
#include "kernels/dtype.h"

namespace weightd::safetensors {

struct TensorSpec {
  std::string name;
  kernels::DType dtype = kernels::DType::kF32;
  std::vector<int64_t> shape;
};

// Header JSON for `tensors` laid out contiguously in the given order (metadata
// first when there is any), padded with spaces to a multiple of 8 bytes so the data
// section starts 8-byte aligned. Does not validate: SafetensorsWriter::Create does.
std::string BuildHeaderJson(const std::vector<TensorSpec>& tensors,
                            const std::vector<std::pair<std::string, std::string>>& metadata);

class SafetensorsWriter {
 public:
  // Validates the specs as the parser would (INVALID_ARGUMENT), creates or
  // truncates `path` and writes the header.
  static absl::StatusOr<std::unique_ptr<SafetensorsWriter>> Create(
      const std::string& path, std::vector<TensorSpec> tensors,
      std::vector<std::pair<std::string, std::string>> metadata = {});

  // The data section, in order, in chunks of any size. More bytes than the
  // tensors need is INVALID_ARGUMENT.
  absl::Status Append(std::string_view bytes);
  // FAILED_PRECONDITION unless every data byte was appended; closes the file
  // either way. No fsync.
  absl::Status Close();
  // Closes the fd; a writer not Close()d leaves a partial file.
  ~SafetensorsWriter();

  uint64_t data_size() const { return data_size_; }
  uint64_t appended() const { return appended_; }

 private:
  SafetensorsWriter(std::string path, UniqueFd fd, uint64_t data_size);
  absl::Status WriteAll(std::string_view bytes);

  std::string path_;
  UniqueFd fd_;
  uint64_t data_size_;
  uint64_t appended_ = 0;
};

}  // namespace weightd::safetensors
