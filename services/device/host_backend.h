// Host "virtual devices": each allocation is a memfd mapped into the daemon,
// quantized by the fast CPU kernels (kernels/quantize_fast.h), and exported as
// the memfd itself. It runs the whole product on a machine without a GPU.
// Thread-safe.
#pragma once

#include <algorithm>
#include <vector>

#include "services/device/device_backend.h"
#include "services/device/hanging_collective.h"

namespace weightd {

class HostBackend : public DeviceBackend {
 public:
  // `capacity` bytes per virtual device.
  HostBackend(int devices, uint64_t capacity);
  // Each write or quantization then takes at least its bytes at this rate: a
  // slower device for tests of flow control (0: memory speed).
  void set_write_bytes_per_second(uint64_t rate) { write_rate_ = rate; }
  // Testing only (--test-hang-collective): the collective of every group of two
  // or more devices hangs in this operation (services/device/hanging_collective.h).
  // Set before any load.
  void set_test_collective_hang(CollectiveHang hang) { hang_ = hang; }
  // Per-tensor tensors park (--park-per-tensor): nothing to gain on host devices,
  // which quantize on the CPU anyway; it runs the placer's parking route without a GPU.
  // `piece_bytes`: WriteTakingAmax copies and scans this much at a time, QuantizeStored
  // converts runs of about this many codes (tests cut small tensors into many).
  // `rest_in_arena`: the rest held in the load's arena (--park-rest-in-arena).
  void set_park_per_tensor(bool park, uint64_t piece_bytes = uint64_t{4} << 20, bool rest_in_arena = false) {
    park_ = park;
    park_piece_bytes_ = std::max<uint64_t>(64, piece_bytes);
    park_rest_ = park && rest_in_arena;
  }

  v1::DeviceKind kind() const override { return v1::DEVICE_KIND_HOST; }
  int device_count() const override { return devices_; }
  uint64_t capacity(int device) const override { return capacity_; }
  uint64_t granularity(int device) const override;

  absl::StatusOr<std::unique_ptr<DeviceAllocation>> Allocate(int device, uint64_t bytes,
                                                             const std::string& label) override;
  absl::Status Write(DeviceAllocation& alloc, uint64_t offset, std::string_view bytes) override;
  absl::Status Quantize(DeviceAllocation& alloc, uint64_t offset, kernels::DType dtype, const void* src,
                        const kernels::Tiling& tiling, const float* scales) override;
  bool parks_per_tensor() const override { return park_; }
  // The bytes copied a piece at a time, the amax taken in the copy's pass.
  absl::StatusOr<float> WriteTakingAmax(DeviceAllocation& alloc, uint64_t offset, kernels::DType dtype,
                                        std::string_view bytes, kernels::NonFinitePolicy policy) override;
  absl::Status QuantizeStored(DeviceAllocation& alloc, uint64_t stored, uint64_t to, kernels::DType dtype,
                              const kernels::Tiling& tiling, float scale) override;
  bool parks_rest_in_arena() const override { return park_rest_; }
  absl::Status Read(DeviceAllocation& alloc, uint64_t offset, uint64_t size, void* out) override;
  // An InProcessCollective: it holds no state worth keeping between loads.
  absl::StatusOr<std::shared_ptr<Collective>> GroupCollective(const std::vector<int>& devices) override;

 private:
  int devices_;
  uint64_t capacity_;
  void Throttle(uint64_t bytes) const;
  uint64_t write_rate_ = 0;
  CollectiveHang hang_ = CollectiveHang::kNone;
  bool park_ = false;
  bool park_rest_ = false;
  uint64_t park_piece_bytes_ = uint64_t{4} << 20;
};

}  // namespace weightd
