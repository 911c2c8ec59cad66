// Counters of one load, written by the shard writers and read by the progress
// events of LoadModel. Lock-free; thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "weightd/v1/loader.pb.h"

namespace weightd {

class LoadProgress {
 public:
  LoadProgress() : start_(std::chrono::steady_clock::now()) {}

  void set_phase(v1::Phase phase) { phase_ = phase; }
  void set_totals(uint64_t bytes, uint32_t tensors) {
    bytes_total_ = bytes;
    tensors_total_ = tensors;
  }
  void add_bytes(uint64_t n) { bytes_done_ += n; }
  void add_tensor() { ++tensors_done_; }
  // Source bytes of the tensors the plan quantizes (metrics: weightd_quantized_bytes_total).
  void set_quantized_bytes(uint64_t n) { quantized_bytes_ = n; }
  uint64_t quantized_bytes() const { return quantized_bytes_; }
  uint64_t bytes_done() const { return bytes_done_; }
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

  v1::LoadEvent Snapshot() const {
    v1::LoadEvent e;
    e.set_phase(phase_.load());
    e.set_bytes_done(bytes_done_);
    e.set_bytes_total(bytes_total_);
    e.set_tensors_done(tensors_done_);
    e.set_tensors_total(tensors_total_);
    double s = seconds();
    e.set_bytes_per_second(s > 0 ? static_cast<double>(bytes_done_) / s : 0);
    return e;
  }

 private:
  std::chrono::steady_clock::time_point start_;
  std::atomic<v1::Phase> phase_{v1::PHASE_WAITING_FOR_HEADERS};
  std::atomic<uint64_t> bytes_done_{0};
  std::atomic<uint64_t> bytes_total_{0};
  std::atomic<uint32_t> tensors_done_{0};
  std::atomic<uint32_t> tensors_total_{0};
  std::atomic<uint64_t> quantized_bytes_{0};
};

}  // namespace weightd
