// ShardWriter::PinGatheredTensors: a stream's gathered per-tensor tensor is pinned
// for its placement (a pin covering the gathered bytes is live while the backend
// quantizes them) and unpinned before the load is done; per-channel and block
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

namespace weightd {
namespace {

class PinRecordingBackend : public HostBackend {
 public:
  PinRecordingBackend() : HostBackend(1, uint64_t{1} << 30) {}
  bool pins_sources() const override { return true; }
  std::unique_ptr<SourcePin> PinSource(const void* data, uint64_t size) override {
    std::lock_guard<std::mutex> lock(mu_);
    pinned_.push_back(size);
    live_.emplace_back(static_cast<const char*>(data), size);
    return std::make_unique<Pin>(this, static_cast<const char*>(data));
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

 private:
  struct Pin : SourcePin {
    Pin(PinRecordingBackend* b, const char* d) : backend(b), data(d) {}
    ~Pin() override {
      std::lock_guard<std::mutex> lock(backend->mu_);
      auto& live = backend->live_;
      for (auto it = live.begin(); it != live.end(); ++it) {
        if (it->first == data) {
          live.erase(it);
          break;
        }
      }
    }
    PinRecordingBackend* backend;
    const char* data;
  };

  std::mutex mu_;
  std::vector<uint64_t> pinned_;
  std::vector<std::pair<const char*, uint64_t>> live_;
  std::vector<bool> quantized_under_a_pin_;
};

constexpr uint64_t kTensorBytes = 64 * 128 * 2;  // BF16 [64, 128]

// Pushes one shard of two quantized BF16 weights through a stream's writer;
// `before(t)` runs before tensor t's first byte.
void PushTwoWeights(PinRecordingBackend& backend, v1::Scheme scheme, const PushPinning* pinning,
                    const std::function<void(size_t)>& before = nullptr) {
  DeviceAccounting accounting({uint64_t{1} << 30});
  v1::LoadModelRequest request;
  request.set_model_id("m");
  request.mutable_source()->mutable_push()->add_shard_files("a.safetensors");
  request.mutable_quantization()->set_scheme(scheme);
  absl::Status result = absl::UnknownError("not finished");
  auto job = std::make_shared<LoadJob>("m", NormalizeSpec(request), backend, accounting,
                                       [&result](const LoadJob*, absl::StatusOr<ResidentModel> model) {
                                         result = model.status();
                                       });
  job->ExpectShards({"a.safetensors"}, "{}");
  const std::string n = std::to_string(kTensorBytes);
  auto header = safetensors::ParseShardHeaderJson(
      "a.safetensors",
      R"({"model.layers.0.mlp.up_proj.weight":{"dtype":"BF16","shape":[64,128],"data_offsets":[0,)" + n +
          R"(]},"model.layers.0.mlp.down_proj.weight":{"dtype":"BF16","shape":[64,128],"data_offsets":[)" + n +
          "," + std::to_string(2 * kTensorBytes) + "]}}",
      {});
  ASSERT_TRUE(header.ok()) << header.status();
  absl::Status planned = absl::UnknownError("not resumed");
  job->OnShardHeader("a.safetensors", *header, [&planned](absl::Status s) { planned = s; });
  ASSERT_TRUE(planned.ok()) << planned;
  ShardWriter* writer = job->Writer("a.safetensors");
  ASSERT_NE(writer, nullptr);
  if (pinning != nullptr) writer->PinGatheredTensors(pinning);
  std::string bytes(kTensorBytes, '\0');
  for (size_t i = 0; i < bytes.size(); i += 2) {  // finite BF16 values of both signs
    bytes[i] = static_cast<char>(i * 7);
    bytes[i + 1] = static_cast<char>((i % 5 == 0 ? 0xBF : 0x3F) - (i / 2) % 3);
  }
  for (size_t t = 0; t < 2; ++t) {
    if (before) before(t);
    // Two pieces, as a stream delivers them.
    ASSERT_TRUE(writer->OnTensorBytes(t, 0, std::string_view(bytes).substr(0, kTensorBytes / 2)).ok());
    ASSERT_TRUE(writer->OnTensorBytes(t, kTensorBytes / 2, std::string_view(bytes).substr(kTensorBytes / 2)).ok());
    ASSERT_TRUE(writer->OnTensorComplete(t).ok());
  }
  job->OnShardDone("a.safetensors", absl::OkStatus());
  EXPECT_TRUE(result.ok()) << result;
}

TEST(PinnedGatherTest, APerTensorWeightIsPinnedWhileItIsQuantizedAndUnpinnedAfter) {
  PinRecordingBackend backend;
  PushPinning always(PushPinning::kAlways);
  PushTwoWeights(backend, v1::SCHEME_PER_TENSOR, &always);
  EXPECT_EQ(backend.pinned(), std::vector<uint64_t>({kTensorBytes, kTensorBytes}));
  EXPECT_EQ(backend.quantized_under_a_pin(), std::vector<bool>({true, true}));
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
