#include "services/device/cuda/pinned_sources.h"

#include <cuda_runtime.h>
#include <unistd.h>

#include <atomic>

#include "base/log.h"

namespace weightd::cuda {

class PinnedSources::Pinned : public SourcePin {
 public:
  Pinned(PinnedSources* owner, uintptr_t begin, std::function<void()> fence)
      : owner_(owner), begin_(begin), fence_(std::move(fence)) {}
  ~Pinned() override {
    owner_->Forget(begin_);
    fence_();
    if (cudaHostUnregister(reinterpret_cast<void*>(begin_)) != cudaSuccess) cudaGetLastError();
  }
  void AwaitCopies() override { fence_(); }

 private:
  PinnedSources* owner_;
  uintptr_t begin_;
  std::function<void()> fence_;
};

bool PinnedSources::Supported() {
  int device = 0, read_only = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&read_only, cudaDevAttrHostRegisterReadOnlySupported, device) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return read_only != 0;
}

std::unique_ptr<SourcePin> PinnedSources::Pin(const void* data, uint64_t size, std::function<void()> fence) {
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t first = reinterpret_cast<uintptr_t>(data);
  const uintptr_t begin = (first + page - 1) / page * page;
  const uintptr_t end = (first + size) / page * page;
  if (end <= begin || end - begin < kMinBytes) return nullptr;
  const cudaError_t error = cudaHostRegister(reinterpret_cast<void*>(begin), end - begin,
                                             cudaHostRegisterReadOnly | cudaHostRegisterPortable);
  if (error != cudaSuccess) {
    cudaGetLastError();
    static std::atomic<bool> logged{false};
    if (!logged.exchange(true)) {
      LogEvent(LogLevel::kWarning, "source_pin_refused",
               {{"error", cudaGetErrorString(error)}, {"bytes", end - begin},
                {"effect", "path loads copy through the staging ring's pinned slots"}});
    }
    return nullptr;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    ranges_[begin] = end;
  }
  return std::make_unique<Pinned>(this, begin, std::move(fence));
}

void PinnedSources::Forget(uintptr_t begin) {
  std::lock_guard<std::mutex> lock(mu_);
  ranges_.erase(begin);
}

PinnedSpan PinnedSources::Find(const void* data, uint64_t size) const {
  const uintptr_t first = reinterpret_cast<uintptr_t>(data), last = first + size;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = ranges_.upper_bound(first);
  if (it != ranges_.begin()) --it;
  // The range starting at or before `first`, else the first one after it.
  for (int i = 0; i < 2 && it != ranges_.end(); ++i, ++it) {
    const uintptr_t b = std::max(first, it->first), e = std::min(last, it->second);
    if (b < e) return PinnedSpan{reinterpret_cast<const uint8_t*>(b), reinterpret_cast<const uint8_t*>(e)};
  }
  return {};
}

}  // namespace weightd::cuda
