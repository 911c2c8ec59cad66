// ShardWriter::PinGatheredTensors: a stream's gathered per-tensor tensor is pinned
// for its placement (a pin covering the gathered bytes is live while the backend
// quantizes them); the pin stays with its buffer (PinnedGather), so the next
// tensor the buffer gathers is read in place without pinning again, unless it is
// larger (pinned anew, after the smaller pin is gone); every placement waits for
// the copies from a pinned buffer before it takes the next tensor; pins go
// before their memory and before the load is done. Per-channel and block
// tensors, whose scales the copies into the staging slots take, are not pinned,
// nor is anything without PinGatheredTensors or while its PushPinning says no
// (auto: more than 4 push streams open). Against the host backend, which
// records its pins and quantizes as always.
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/dtype.h"
#include "services/device/accounting.h"
#include "services/device/host_backend.h"
#include "services/load/load_job.h"
#include "services/load/push_pinning.h"
#include "services/load/spec_validation.h"
#include "tests/services/load/one_shard_push.h"

namespace weightd {
namespace {

class PinRecordingBackend : public HostBackend {
 public:
  PinRecordingBackend() : HostBackend(1, uint64_t{1} << 30) {}
  bool pins_sources() const override { return true; }
  std::unique_ptr<SourcePin> PinSource(const void* data, uint64_t size) override {
    std::lock_guard<std::mutex> lock(mu_);
    pinned_.push_back(size);
    live_when_pinned_.push_back(live_.size());
    live_.emplace_back(static_cast<const char*>(data), size);
    return std::make_unique<Pin>(this, static_cast<const char*>(data), size);
  }
  absl::Status Quantize(DeviceAllocation& alloc, uint64_t offset, kernels::DType dtype, const void* src,
                        const kernels::Tiling& tiling, const float* scales) override {
    const char* begin = static_cast<const char*>(src);
    const uint64_t bytes = static_cast<uint64_t>(tiling.rows) * tiling.cols * kernels::DTypeSize(dtype);
    {
      std::lock_guard<std::mutex> lock(mu_);
      bool covered = false;
      for (const auto& [data, size] : live_) covered = covered || (begin >= data && begin + bytes <= data + size);
      quantized_under_a_pin_.push_back(covered);
    }
    return HostBackend::Quantize(alloc, offset, dtype, src, tiling, scales);
  }

  std::vector<uint64_t> pinned() {
    std::lock_guard<std::mutex> lock(mu_);
    return pinned_;
  }
  std::vector<bool> quantized_under_a_pin() {
    std::lock_guard<std::mutex> lock(mu_);
    return quantized_under_a_pin_;
  }
  size_t live() {
    std::lock_guard<std::mutex> lock(mu_);
    return live_.size();
  }
  // Pins live (of this backend) as each pin was made.
  std::vector<size_t> live_when_pinned() {
    std::lock_guard<std::mutex> lock(mu_);
    return live_when_pinned_;
  }
  int awaits() {
    std::lock_guard<std::mutex> lock(mu_);
    return awaits_;
  }

 private:
  struct Pin : SourcePin {
    Pin(PinRecordingBackend* b, const char* d, uint64_t n) : backend(b), data(d), size(n) {}
    ~Pin() override {
      // The pinned bytes must still be there (a freed buffer fails here under ASan).
      const volatile char* bytes = data;
      static_cast<void>(bytes[0] + bytes[size - 1]);
      std::lock_guard<std::mutex> lock(backend->mu_);
      auto& live = backend->live_;
      for (auto it = live.begin(); it != live.end(); ++it) {
        if (it->first == data) {
          live.erase(it);
          break;
        }
      }
    }
    void AwaitCopies() override {
      std::lock_guard<std::mutex> lock(backend->mu_);
      ++backend->awaits_;
    }
    PinRecordingBackend* backend;
    const char* data;
    uint64_t size;
  };

  std::mutex mu_;
  int awaits_ = 0;
  std::vector<size_t> live_when_pinned_;
  std::vector<uint64_t> pinned_;
  std::vector<std::pair<const char*, uint64_t>> live_;
  std::vector<bool> quantized_under_a_pin_;
};

constexpr int kCols = 128;
constexpr uint64_t kTensorBytes = 64 * kCols * 2;  // BF16 [64, 128]

// Pushes one shard of quantized BF16 weights [rows[t], 128] through a stream's
// writer; `before(t)` runs before tensor t's first byte.
void PushWeights(PinRecordingBackend& backend, v1::Scheme scheme, const PushPinning* pinning,
                 const std::vector<int>& rows, const std::function<void(size_t)>& before = nullptr) {
  OneShardPush push(backend, scheme);
  std::string json = "{";
  uint64_t end = 0;
  for (size_t t = 0; t < rows.size(); ++t) {
    const uint64_t begin = end;
    end += static_cast<uint64_t>(rows[t]) * kCols * 2;
    json += (t == 0 ? "" : ",") + std::string("\"model.layers.") + std::to_string(t) +
            ".mlp.up_proj.weight\":{\"dtype\":\"BF16\",\"shape\":[" + std::to_string(rows[t]) + "," +
            std::to_string(kCols) + "],\"data_offsets\":[" + std::to_string(begin) + "," + std::to_string(end) +
            "]}";
  }
  ShardWriter* writer = push.Plan(json + "}");
  ASSERT_NE(writer, nullptr);
  if (pinning != nullptr) writer->PinGatheredTensors(pinning);
  for (size_t t = 0; t < rows.size(); ++t) {
    if (before) before(t);
    std::string bytes(static_cast<size_t>(rows[t]) * kCols * 2, '\0');
    for (size_t i = 0; i < bytes.size(); i += 2) {  // finite BF16 values of both signs
      bytes[i] = static_cast<char>(i * 7 + t);
      bytes[i + 1] = static_cast<char>((i % 5 == 0 ? 0xBF : 0x3F) - (i / 2) % 3);
    }
    // Two pieces, as a stream delivers them.
    const std::string_view all(bytes);
    ASSERT_TRUE(writer->OnTensorBytes(t, 0, all.substr(0, bytes.size() / 2)).ok());
    ASSERT_TRUE(writer->OnTensorBytes(t, bytes.size() / 2, all.substr(bytes.size() / 2)).ok());
    ASSERT_TRUE(writer->OnTensorComplete(t).ok());
  }
  push.Done(absl::OkStatus());
  EXPECT_TRUE(push.result.ok()) << push.result;
}

void PushTwoWeights(PinRecordingBackend& backend, v1::Scheme scheme, const PushPinning* pinning,
                    const std::function<void(size_t)>& before = nullptr) {
  PushWeights(backend, scheme, pinning, {64, 64}, before);
}

TEST(PinnedGatherTest, APerTensorWeightIsPinnedAndItsBufferStaysPinnedForTheNext) {
  PinRecordingBackend backend;
  PushPinning always(PushPinning::kAlways);
  PushTwoWeights(backend, v1::SCHEME_PER_TENSOR, &always);
  // One pin: the second weight is gathered into the first one's buffer, still pinned.
  EXPECT_EQ(backend.pinned(), std::vector<uint64_t>({kTensorBytes}));
  EXPECT_EQ(backend.quantized_under_a_pin(), std::vector<bool>({true, true}));
  EXPECT_EQ(backend.awaits(), 2);  // each placement waited for the copies from it
  EXPECT_EQ(backend.live(), 0u);   // unpinned with its buffer, before the load was done
}

TEST(PinnedGatherTest, ALargerTensorIsPinnedAnewOnceTheSmallerPinIsGone) {
  PinRecordingBackend backend;
  PushPinning always(PushPinning::kAlways);
  PushWeights(backend, v1::SCHEME_PER_TENSOR, &always, {64, 128, 32, 128});
  // The buffer grows for the second weight (unpinned before its memory goes),
  // whose pin then covers the third and fourth.
  EXPECT_EQ(backend.pinned(), std::vector<uint64_t>({kTensorBytes, 2 * kTensorBytes}));
  EXPECT_EQ(backend.live_when_pinned(), std::vector<size_t>({0, 0}));  // pins never overlap
  EXPECT_EQ(backend.quantized_under_a_pin(), std::vector<bool>({true, true, true, true}));
  EXPECT_EQ(backend.awaits(), 4);
  EXPECT_EQ(backend.live(), 0u);
}

TEST(PinnedGatherTest, PerChannelAndBlockWeightsKeepTheCopyThatTakesTheirScales) {
  for (v1::Scheme scheme : {v1::SCHEME_PER_CHANNEL, v1::SCHEME_BLOCK}) {
    SCOPED_TRACE(v1::Scheme_Name(scheme));
    PinRecordingBackend backend;
    PushPinning always(PushPinning::kAlways);
    PushTwoWeights(backend, scheme, &always);
    EXPECT_TRUE(backend.pinned().empty());
    EXPECT_EQ(backend.quantized_under_a_pin(), std::vector<bool>({false, false}));
  }
}

TEST(PinnedGatherTest, NothingIsPinnedWithoutPinGatheredTensorsOrWhenItSaysNever) {
  PinRecordingBackend backend;
  PushTwoWeights(backend, v1::SCHEME_PER_TENSOR, nullptr);
  PushPinning never(0);
  PushPinning::Stream open(&never);
  PushTwoWeights(backend, v1::SCHEME_PER_TENSOR, &never);
  EXPECT_TRUE(backend.pinned().empty());
  EXPECT_EQ(backend.quantized_under_a_pin(), std::vector<bool>({false, false, false, false}));
}

// --pin-pushed-tensors=auto: pinned while at most kAutoMaxStreams push streams
// are open, decided for each tensor as it is placed.
TEST(PinnedGatherTest, AutoPinsWhileFewStreamsAreOpen) {
  PushPinning pinning(PushPinning::kAutoMaxStreams);
  PushPinning::Stream self(&pinning);  // this writer's stream
  std::vector<std::unique_ptr<PushPinning::Stream>> others;
  PinRecordingBackend backend;
  PushTwoWeights(backend, v1::SCHEME_PER_TENSOR, &pinning, [&](size_t t) {
    // The first tensor placed with kAutoMaxStreams open, the second with one more.
    const size_t want = t == 0 ? PushPinning::kAutoMaxStreams - 1 : PushPinning::kAutoMaxStreams;
    while (others.size() < want) others.push_back(std::make_unique<PushPinning::Stream>(&pinning));
  });
  EXPECT_EQ(pinning.open(), PushPinning::kAutoMaxStreams + 1);
  EXPECT_EQ(backend.pinned(), std::vector<uint64_t>({kTensorBytes}));
  EXPECT_EQ(backend.quantized_under_a_pin(), std::vector<bool>({true, false}));
  others.clear();
  EXPECT_EQ(pinning.open(), 1);
}

TEST(PinnedGatherTest, TheFlagReadsAutoTrueOrFalse) {
  EXPECT_EQ(*PushPinning::ParseFlag("auto"), PushPinning::kAutoMaxStreams);
  EXPECT_EQ(*PushPinning::ParseFlag("true"), PushPinning::kAlways);
  EXPECT_EQ(*PushPinning::ParseFlag("false"), 0);
  absl::StatusOr<int> bad = PushPinning::ParseFlag("yes");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("auto, true or false"), std::string::npos);
}

}  // namespace
}  // namespace weightd
