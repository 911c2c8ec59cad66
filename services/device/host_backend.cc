#include "services/device/host_backend.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "base/unique_fd.h"
#include "services/device/in_process_collective.h"
#include "services/device/parked_tensor.h"
#include "kernels/quantize_fast.h"

namespace weightd {
namespace {

class HostAllocation : public DeviceAllocation {
 public:
  HostAllocation(int device, uint64_t size, UniqueFd fd, UniqueFd read_only_fd, uint8_t* base)
      : device_(device), size_(size), fd_(std::move(fd)), read_only_fd_(std::move(read_only_fd)), base_(base) {}
  ~HostAllocation() override {
    if (base_ != nullptr) ::munmap(base_, size_);
  }
  int device() const override { return device_; }
  uint64_t size() const override { return size_; }
  v1::HandleType handle_type() const override { return v1::HANDLE_TYPE_MEMFD; }
  int export_fd(bool writable = false) const override { return writable ? fd_.get() : read_only_fd_.get(); }
  uint8_t* base() const { return base_; }

 private:
  int device_;
  uint64_t size_;
  UniqueFd fd_;
  UniqueFd read_only_fd_;  // the same memfd opened O_RDONLY: mmap(PROT_WRITE, MAP_SHARED) fails
  uint8_t* base_;
};

absl::StatusOr<uint8_t*> Region(DeviceAllocation& alloc, uint64_t offset, uint64_t size) {
  if (offset > alloc.size() || size > alloc.size() - offset) {
    return absl::InternalError(absl::StrCat("write of ", size, " bytes at ", offset,
                                            " outside an allocation of ", alloc.size()));
  }
  return static_cast<HostAllocation&>(alloc).base() + offset;
}

}  // namespace

HostBackend::HostBackend(int devices, uint64_t capacity) : devices_(devices), capacity_(capacity) {}

uint64_t HostBackend::granularity(int device) const {
  return static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

absl::StatusOr<std::unique_ptr<DeviceAllocation>> HostBackend::Allocate(int device, uint64_t bytes,
                                                                        const std::string& label) {
  if (device < 0 || device >= devices_) {
    return absl::InvalidArgumentError(absl::StrCat("no host device ", device));
  }
  uint64_t size = RoundUp(bytes == 0 ? 1 : bytes, granularity(device));
  UniqueFd fd(::memfd_create(("weightd:" + label).c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd.valid()) {
    return absl::ResourceExhaustedError(absl::StrCat("memfd_create: ", std::strerror(errno)));
  }
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    return absl::ResourceExhaustedError(absl::StrCat("ftruncate ", size, ": ", std::strerror(errno)));
  }
  // No holder may change the size (a shrink would SIGBUS every other mapping), nor the seals.
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    return absl::InternalError(absl::StrCat("sealing the memfd: ", std::strerror(errno)));
  }
  UniqueFd read_only(::open(absl::StrCat("/proc/self/fd/", fd.get()).c_str(), O_RDONLY | O_CLOEXEC));
  if (!read_only.valid()) {
    return absl::ResourceExhaustedError(absl::StrCat("a read-only descriptor of the memfd: ", std::strerror(errno)));
  }
  void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (base == MAP_FAILED) {
    return absl::ResourceExhaustedError(absl::StrCat("mmap ", size, ": ", std::strerror(errno)));
  }
  return std::make_unique<HostAllocation>(device, size, std::move(fd), std::move(read_only),
                                          static_cast<uint8_t*>(base));
}

void HostBackend::Throttle(uint64_t bytes) const {
  if (write_rate_ == 0) return;
  std::this_thread::sleep_for(std::chrono::duration<double>(static_cast<double>(bytes) / write_rate_));
}

absl::Status HostBackend::Write(DeviceAllocation& alloc, uint64_t offset, std::string_view bytes) {
  auto dst = Region(alloc, offset, bytes.size());
  if (!dst.ok()) return dst.status();
  std::memcpy(*dst, bytes.data(), bytes.size());
  Throttle(bytes.size());
  return absl::OkStatus();
}

absl::Status HostBackend::Quantize(DeviceAllocation& alloc, uint64_t offset, kernels::DType dtype, const void* src,
                                   const kernels::Tiling& tiling, const float* scales) {
  auto dst = Region(alloc, offset, static_cast<uint64_t>(tiling.rows) * tiling.cols);
  if (!dst.ok()) return dst.status();
  kernels::QuantizeRowsFast(dtype, src, tiling, scales, 0, tiling.rows, *dst);
  Throttle(static_cast<uint64_t>(tiling.rows) * tiling.cols);
  return absl::OkStatus();
}

absl::StatusOr<float> HostBackend::WriteTakingAmax(DeviceAllocation& alloc, uint64_t offset, kernels::DType dtype,
                                                   std::string_view bytes, kernels::NonFinitePolicy policy) {
  auto dst = Region(alloc, offset, bytes.size());
  if (!dst.ok()) return dst.status();
  const uint64_t element = kernels::DTypeSize(dtype);
  const uint64_t piece = std::max<uint64_t>(1, park_piece_bytes_ / element) * element;
  float amax = 0.0f;
  for (uint64_t done = 0; done < bytes.size();) {
    const uint64_t n = std::min<uint64_t>(piece, bytes.size() - done);
    absl::StatusOr<float> m = kernels::CopyAbsMaxFast(dtype, *dst + done, bytes.data() + done, n / element, policy);
    if (!m.ok()) return m.status();
    amax = std::max(amax, *m);
    done += n;
  }
  Throttle(bytes.size());
  return amax;
}

absl::Status HostBackend::QuantizeStored(DeviceAllocation& alloc, uint64_t stored, uint64_t to, kernels::DType dtype,
                                         const kernels::Tiling& tiling, float scale) {
  const uint64_t element = kernels::DTypeSize(dtype);
  const uint64_t rows = tiling.rows, cols = tiling.cols;
  if (element < 2) return absl::InternalError("1-byte elements are not parked");
  auto source = Region(alloc, stored, rows * cols * element);
  if (!source.ok()) return source.status();
  uint8_t* base = *source;
  WEIGHTD_RETURN_IF_ERROR(CheckStoredAndCodes(stored, to, rows * cols, element));
  if (to != stored) {  // elsewhere: one step
    auto out = Region(alloc, to, rows * cols);
    if (!out.ok()) return out.status();
    kernels::QuantizeRowsFast(dtype, base, tiling, &scale, 0, rows, *out);
    Throttle(rows * cols);
    return absl::OkStatus();
  }
  std::vector<uint8_t> buffer;
  for (const ParkedRun& run : ParkedRuns(rows, park_piece_bytes_ / std::max<uint64_t>(1, cols))) {
    uint8_t* out = base + run.begin * cols;
    if (!run.in_place) {
      buffer.resize((run.end - run.begin) * cols);
      out = buffer.data();
    }
    kernels::QuantizeRowsFast(dtype, base + run.begin * cols * element, tiling, &scale, run.begin, run.end, out);
    if (!run.in_place) std::memcpy(base + run.begin * cols, buffer.data(), buffer.size());
  }
  Throttle(rows * cols);
  return absl::OkStatus();
}

absl::Status HostBackend::Read(DeviceAllocation& alloc, uint64_t offset, uint64_t size, void* out) {
  auto src = Region(alloc, offset, size);
  if (!src.ok()) return src.status();
  std::memcpy(out, *src, size);
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<Collective>> HostBackend::GroupCollective(const std::vector<int>& devices) {
  for (int d : devices) {
    if (d < 0 || d >= devices_) return absl::InvalidArgumentError(absl::StrCat("no host device ", d));
  }
  auto collective = std::make_shared<InProcessCollective>(*this, static_cast<int>(devices.size()));
  // A group of one rank waits for no peer: it never hangs (and tp 1 loads go on).
  if (hang_ == CollectiveHang::kNone || devices.size() < 2) return collective;
  return std::make_shared<HangingCollective>(std::move(collective), hang_);
}

}  // namespace weightd
