// The seam between the load pipeline and the memory it fills: `host`
// (memfd-backed virtual devices, CPU kernels) and, later, `cuda`. An allocation
// is one exportable block of device memory; the pipeline writes tensors into it
// at offsets the planner chose. Implementations are thread-safe: distinct
// regions of one allocation may be written from several threads at once.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/dtype.h"
#include "kernels/quantize.h"
#include "services/device/collective.h"
#include "weightd/v1/loader.pb.h"

namespace weightd {

class DeviceAccounting;

class DeviceAllocation {
 public:
  virtual ~DeviceAllocation() = default;  // frees the memory (a worker's mapping may outlive it)
  virtual int device() const = 0;
  virtual uint64_t size() const = 0;
  virtual v1::HandleType handle_type() const = 0;
  // The descriptor the handle socket passes to workers (memfd, VMM fd); -1 if none.
  // Not `writable`: one through which the memory can only be mapped read-only, where
  // the backend can tell (a host memfd opened O_RDONLY); a CUDA VMM fd grants what the
  // importer asks for (clients map read-only on request).
  virtual int export_fd(bool writable = false) const = 0;
  // The legacy cudaIpcMemHandle_t (64 bytes) where the allocation has one.
  virtual std::string ipc_handle() const { return {}; }
};

// Host bytes a backend's copy engines read in place while it lives (DeviceBackend::PinSource).
class SourcePin {
 public:
  // Waits for every copy from the bytes issued so far, then unpins them.
  virtual ~SourcePin() = default;
  // Waits for every copy from the bytes issued so far; they stay pinned, and may
  // be written again (a gather buffer taking its next tensor, PinnedGather).
  virtual void AwaitCopies() = 0;
};

class DeviceBackend {
 public:
  virtual ~DeviceBackend() = default;

  virtual v1::DeviceKind kind() const = 0;
  virtual int device_count() const = 0;
  virtual uint64_t capacity(int device) const = 0;
  // Allocation sizes are rounded up to this (host: page size; VMM: 2 MiB typically).
  virtual uint64_t granularity(int device) const = 0;

  virtual absl::StatusOr<std::unique_ptr<DeviceAllocation>> Allocate(int device, uint64_t bytes,
                                                                     const std::string& label) = 0;
  // Stores `bytes` unchanged at `offset`.
  virtual absl::Status Write(DeviceAllocation& alloc, uint64_t offset, std::string_view bytes) = 0;
  // Quantizes the 2-D tensor at `src` (host memory, tiling.rows x tiling.cols
  // elements of `dtype`) to E4M3FN at `offset`, each tile with its scale
  // (kernels::QuantizeRows semantics). `src` may be reused once this returns;
  // bytes inside a pin (PinSource) once that pin has gone.
  virtual absl::Status Quantize(DeviceAllocation& alloc, uint64_t offset, kernels::DType dtype, const void* src,
                                const kernels::Tiling& tiling, const float* scales) = 0;
  // Whether QuantizeTakingScales may take scales while it copies (else callers take
  // them first and call Quantize).
  virtual bool takes_scales_while_copying() const { return false; }
  // As Quantize, with the scales of `scheme` (kernels::TileScales semantics under
  // `policy`) taken on the way, from the backend's own copy of the bytes, into
  // `scales` (tiling.num_tiles()). FAILED_PRECONDITION, with nothing done, where it
  // cannot for this tensor (a tile row larger than its copies, a per-tensor scale):
  // take the scales first then.
  virtual absl::Status QuantizeTakingScales(DeviceAllocation& alloc, uint64_t offset, kernels::Scheme scheme,
                                            kernels::DType dtype, const void* src, const kernels::Tiling& tiling,
                                            kernels::NonFinitePolicy policy, float* scales) {
    return absl::FailedPreconditionError("this backend takes no scales while copying");
  }
  // Whether the placer parks per-tensor tensors (services/device/parked_tensor.h):
  // it then calls WriteTakingAmax and QuantizeStored for them.
  virtual bool parks_per_tensor() const { return false; }
  // Stores `bytes` (whole elements of `dtype`) unchanged at `offset`, as Write does,
  // and returns their amax (kernels::AbsMax under `policy`: INVALID_ARGUMENT for a
  // NaN or Inf under kFail), taken in the pass that copies them (into the staging
  // slots). A backend whose parks_per_tensor() is true does it for any bytes.
  virtual absl::StatusOr<float> WriteTakingAmax(DeviceAllocation& alloc, uint64_t offset, kernels::DType dtype,
                                                std::string_view bytes, kernels::NonFinitePolicy policy) {
    return absl::UnimplementedError("this backend takes no amax while writing");
  }
  // Quantizes the tiling.rows x tiling.cols elements of `dtype` (2 or 4 bytes each)
  // that Write or WriteTakingAmax stored at `stored`, all with `scale`, after those
  // writes, into E4M3 codes at `to`: in place where `to` is `stored` (ParkedRuns
  // says why the order is safe), else at a range that does not overlap the stored
  // bytes. A backend whose parks_per_tensor() is true does it for any such tensor
  // (its writes may still be in flight: no other route may follow).
  virtual absl::Status QuantizeStored(DeviceAllocation& alloc, uint64_t stored, uint64_t to, kernels::DType dtype,
                                      const kernels::Tiling& tiling, float scale) {
    return absl::UnimplementedError("this backend quantizes no stored bytes");
  }
  // Whether a parked tensor's rest is held in the arena of its load (ArenaLot,
  // services/load/arena_lot.h) rather than read twice on the host.
  virtual bool parks_rest_in_arena() const { return false; }
  // A predicate that holds once every QuantizeStored enqueued so far for `device` has
  // read what it quantizes; null where they have when they return.
  virtual std::function<bool()> StoredQuantizedMarker(int device) { return nullptr; }
  // Lets the devices copy host bytes [data, +size) (a mapped checkpoint file) in
  // place: until the pin goes, Write and Quantize read the pinned part of their
  // source without a host copy. Null where the backend has nothing to gain or
  // cannot (host devices; a driver without read-only registration; a range too
  // small): copies then go as they would. The bytes must stay mapped until the
  // pin goes; pins of one backend must not overlap.
  virtual std::unique_ptr<SourcePin> PinSource(const void* data, uint64_t size) { return nullptr; }
  // Whether PinSource may pin anything (else callers need not ask).
  virtual bool pins_sources() const { return false; }
  // Waits until every Write and Quantize issued for `device` has landed, and
  // reports any asynchronous failure. Loads call it before they are READY.
  virtual absl::Status Synchronize(int device) { return absl::OkStatus(); }
  // Device memory the backend keeps for itself (the staging ring), counted in the
  // device's accounting from the start.
  virtual uint64_t reserved_bytes(int device) const { return 0; }
  // Where device memory the backend takes later for itself (NCCL communicators)
  // is reserved; set once at startup, outlives the backend's use of it.
  virtual void set_accounting(DeviceAccounting* accounting) {}
  // Copies `size` bytes at `offset` back to the host (tests, export of host devices).
  virtual absl::Status Read(DeviceAllocation& alloc, uint64_t offset, uint64_t size, void* out) = 0;
  // The collective of a tensor-parallel group, rank r on devices[r] (distinct,
  // existing devices). A backend that keeps communicators creates one per device
  // list on first use and hands the same one to every later load.
  virtual absl::StatusOr<std::shared_ptr<Collective>> GroupCollective(const std::vector<int>& devices) = 0;
};

inline uint64_t RoundUp(uint64_t value, uint64_t multiple) {
  return multiple == 0 ? value : (value + multiple - 1) / multiple * multiple;
}

}  // namespace weightd
