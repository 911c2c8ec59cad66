// Tensor-parallel loads on host devices, end to end through the load pipeline
// (path source, planner, placer, in-process collective): for tp 1, 2, 4 and 8
// under every scheme and both scale scopes, every rank's bytes are compared
// with the CPU reference applied to the whole checkpoint tensor (scope tensor)
// or to the rank's slice alone (scope shard).
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <future>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/quantize.h"
#include "services/device/chunk_scales.h"
#include "services/device/host_backend.h"
#include "services/load/load_job.h"
#include "services/load/output_layout.h"
#include "services/load/spec_validation.h"
#include "services/sources/checkpoint_dir.h"
#include "services/sources/path_source.h"
#include "tests/services/load/tp_checkpoint.h"

namespace weightd::testing {
namespace {

constexpr int kDevices = 8;
constexpr uint64_t kCapacity = uint64_t{1} << 30;

// Where rank `rank` of `tp` is expected to sit in a tensor of the test checkpoint,
// written out by name (not derived from the code under test).
struct Part {
  int dim = -1;
  int64_t begin = 0, length = 0;
};

Part ExpectedPart(const TpTensor& t, int tp, int rank) {
  auto even = [&](int dim) { return Part{dim, t.shape[dim] / tp * rank, t.shape[dim] / tp}; };
  for (const char* column : {"q_proj.weight", "q_proj.bias", "gate_proj.weight", "up_proj.weight", "embed_tokens.weight",
                             "lm_head.weight"}) {
    if (absl::EndsWith(t.name, column)) return even(0);
  }
  for (const char* row : {"o_proj.weight", "down_proj.weight"}) {
    if (absl::EndsWith(t.name, row)) return even(1);
  }
  if (absl::EndsWith(t.name, "k_proj.weight") || absl::EndsWith(t.name, "v_proj.weight")) {
    if (tp <= 2) return even(0);
    const int64_t head = rank * 2 / tp;  // 2 key/value heads of 128 rows
    return Part{0, head * 128, 128};
  }
  return Part{};
}

// A 1-D or 2-D tensor's part, by plain loops.
std::string Slice(const std::string& bytes, const std::vector<int64_t>& shape, size_t element, Part part) {
  if (part.dim < 0) return bytes;
  const int64_t cols = shape.size() > 1 ? shape[1] : 1;
  if (part.dim == 0) return bytes.substr(part.begin * cols * element, part.length * cols * element);
  std::string out;
  for (int64_t r = 0; r < shape[0]; ++r) out += bytes.substr((r * cols + part.begin) * element, part.length * element);
  return out;
}

std::vector<int64_t> SliceShape(std::vector<int64_t> shape, Part part) {
  if (part.dim >= 0) shape[part.dim] = part.length;
  return shape;
}

struct Quantized {
  std::string fp8;
  std::string scales;  // F32 bytes
  std::vector<int64_t> grid;
};

Quantized Reference(kernels::Scheme scheme, kernels::DType dtype, const std::string& bytes,
                    const std::vector<int64_t>& shape) {
  const kernels::Tiling tiling = kernels::TilingFor(scheme, shape[0], shape[1]);
  std::vector<float> scales(tiling.num_tiles());
  EXPECT_TRUE(kernels::TileScales(scheme, dtype, bytes.data(), tiling, kernels::NonFinitePolicy::kFail, scales.data()).ok());
  std::string fp8(tiling.rows * tiling.cols, '\0');
  kernels::QuantizeRows(dtype, bytes.data(), tiling, scales.data(), 0, tiling.rows, reinterpret_cast<uint8_t*>(fp8.data()));
  return {fp8, std::string(reinterpret_cast<const char*>(scales.data()), scales.size() * sizeof(float)),
          {static_cast<int64_t>(tiling.grid_rows()), static_cast<int64_t>(tiling.grid_cols())}};
}

// The scales of a part of the whole tensor's tile grid (scope tensor).
std::string ScalesOfPart(kernels::Scheme scheme, const Quantized& whole, Part part) {
  if (scheme == kernels::Scheme::kPerTensor || part.dim < 0) return whole.scales;
  if (scheme == kernels::Scheme::kPerChannel) return part.dim == 0 ? Slice(whole.scales, whole.grid, 4, part) : whole.scales;
  const int64_t block = static_cast<int64_t>(kernels::kBlockSize);
  Part grid_part{part.dim, part.begin / block, (part.length + block - 1) / block};
  return Slice(whole.scales, whole.grid, 4, grid_part);
}

class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/weightd-tp-XXXXXX";
    path_ = ::mkdtemp(pattern);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct LoadOptions {
  v1::Scheme scheme = v1::SCHEME_PER_TENSOR;
  v1::ScaleScope scope = v1::SCALE_SCOPE_TENSOR;
  std::vector<uint32_t> devices;
  std::vector<v1::ShardingRule> rules;
  v1::NonFinite nonfinite = v1::NONFINITE_FAIL;
};

// Host devices that, when `while_copying`, take per-channel and block scales from
// copies of chunks of whole tile rows (as the CUDA staging ring does from its pinned
// slots, with the same helpers), in chunks of at most 300 KiB so that a tensor is
// many chunks and tile rows larger than that are refused (the caller takes the
// scales first then).
class ScalesWhileCopyingBackend : public HostBackend {
 public:
  static constexpr uint64_t kChunkBytes = 300 << 10;
  // `park`: per-tensor tensors park (--park-per-tensor), in pieces and runs of 16 KiB;
  // `rest_in_arena`: their rest waits in the load's arena (--park-rest-in-arena).
  ScalesWhileCopyingBackend(bool while_copying, bool park = false, bool rest_in_arena = false)
      : HostBackend(kDevices, kCapacity), while_copying_(while_copying) {
    set_park_per_tensor(park, 16 << 10, rest_in_arena);
  }
  // Each write that takes an amax (the parked rows; the rest into the lot) first
  // sleeps this long: readers then hold the lot's leases while others go on to the
  // tensors it borrows from, which must wait for them.
  std::chrono::milliseconds amax_write_delay{0};
  absl::StatusOr<float> WriteTakingAmax(DeviceAllocation& alloc, uint64_t offset, kernels::DType dtype,
                                        std::string_view bytes, kernels::NonFinitePolicy policy) override {
    std::this_thread::sleep_for(amax_write_delay);
    return HostBackend::WriteTakingAmax(alloc, offset, dtype, bytes, policy);
  }
  absl::Status QuantizeStored(DeviceAllocation& alloc, uint64_t stored, uint64_t to, kernels::DType dtype,
                              const kernels::Tiling& tiling, float scale) override {
    ++(to == stored ? parked : rests_in_arena);
    return HostBackend::QuantizeStored(alloc, stored, to, dtype, tiling, scale);
  }
  bool takes_scales_while_copying() const override { return while_copying_; }
  absl::Status QuantizeTakingScales(DeviceAllocation& alloc, uint64_t offset, kernels::Scheme scheme,
                                    kernels::DType dtype, const void* src, const kernels::Tiling& tiling,
                                    kernels::NonFinitePolicy policy, float* scales) override {
    const uint64_t per_chunk = TileRowsPerChunk(dtype, tiling, kChunkBytes, 1 << 12);
    if (per_chunk == 0) {
      ++refused;
      return absl::FailedPreconditionError("a tile row is larger than a chunk");
    }
    std::string copy(kChunkBytes, '\0');
    for (uint64_t tile_row = 0; tile_row < tiling.grid_rows(); tile_row += per_chunk) {
      const uint64_t tile_rows = std::min<uint64_t>(per_chunk, tiling.grid_rows() - tile_row);
      double copy_seconds = 0;
      absl::Status taken = CopyTakingChunkScales(scheme, dtype, tiling, tile_row, tile_rows, src, copy.data(), policy,
                                                 scales + tile_row * tiling.grid_cols(), copy_seconds);
      if (!taken.ok()) return taken;
      ++chunks;
    }
    return Quantize(alloc, offset, dtype, src, tiling, scales);
  }
  std::atomic<int> chunks{0}, refused{0}, parked{0}, rests_in_arena{0};

 private:
  bool while_copying_;
};

class TpLoad {
 public:
  explicit TpLoad(bool scales_while_copying = false, bool park = false, bool rest_in_arena = false)
      : backend_(scales_while_copying, park, rest_in_arena), accounting_(std::vector<uint64_t>(kDevices, kCapacity)) {}

  absl::StatusOr<ResidentModel> Load(const TpCheckpoint& checkpoint, const LoadOptions& options) {
    const std::string path = absl::StrCat("m", loads_++);
    absl::Status written = WriteTpCheckpoint(checkpoint, dir_.path() + "/" + path);
    if (!written.ok()) return written;
    v1::LoadModelRequest request;
    request.set_model_id(path);
    request.mutable_source()->mutable_path()->set_path(path);
    request.mutable_quantization()->set_scheme(options.scheme);
    request.mutable_quantization()->set_scale_scope(options.scope);
    request.mutable_quantization()->set_nonfinite(options.nonfinite);
    request.mutable_placement()->set_tp_size(static_cast<uint32_t>(options.devices.size()));
    for (uint32_t d : options.devices) request.mutable_placement()->add_devices(d);
    for (const v1::ShardingRule& rule : options.rules) *request.mutable_placement()->add_sharding_rules() = rule;
    absl::Status valid = ValidateLoadSpec(request);
    if (!valid.ok()) return valid;
    auto files = FindCheckpoint(dir_.path(), path);
    if (!files.ok()) return files.status();
    std::promise<absl::StatusOr<ResidentModel>> done;
    auto job = std::make_shared<LoadJob>(path, NormalizeSpec(request), backend_, accounting_,
                                         [&done](const LoadJob*, absl::StatusOr<ResidentModel> result) {
                                           done.set_value(std::move(result));
                                         });
    // Odd chunks cut every tensor's bytes at places that are not slice boundaries.
    PathSourceOptions source{4093, 2};
    source.read_threads = read_threads;
    RunPathLoad(job, *files, {}, source);
    return done.get_future().get();
  }

  std::map<std::string, std::string> RankTensors(const ResidentModel& model, int rank) {
    std::map<std::string, std::string> out;
    const v1::RankManifest& manifest = model.manifest.ranks(rank);
    for (const v1::TensorEntry& e : manifest.tensors()) {
      std::string bytes(e.size(), '\0');
      EXPECT_TRUE(backend_.Read(model.arenas[rank]->allocation(), e.offset(), e.size(), bytes.data()).ok());
      out[e.name()] = std::move(bytes);
    }
    return out;
  }

  ScalesWhileCopyingBackend& backend() { return backend_; }
  DeviceAccounting& accounting() { return accounting_; }
  int read_threads = 8;  // the path source's readers

 private:
  ScalesWhileCopyingBackend backend_;
  DeviceAccounting accounting_;
  TempDir dir_;
  int loads_ = 0;
};

std::vector<uint32_t> FirstDevices(int tp) {
  std::vector<uint32_t> devices;
  for (int d = 0; d < tp; ++d) devices.push_back(d);
  return devices;
}

const v1::TensorEntry* Entry(const v1::RankManifest& rank, const std::string& name) {
  for (const v1::TensorEntry& e : rank.tensors()) {
    if (e.name() == name) return &e;
  }
  return nullptr;
}

// Per rank: the allocation is what the ledger holds, to the byte, and every
// tensor lies inside it without overlapping another.
void ExpectAccountingMatchesManifest(TpLoad& load, const ResidentModel& model) {
  std::vector<uint64_t> per_device(kDevices, 0);
  uint64_t total = 0;
  for (const v1::RankManifest& rank : model.manifest.ranks()) {
    ASSERT_EQ(rank.allocations_size(), 1);
    per_device[rank.device()] += rank.allocations(0).size();
    total += rank.allocations(0).size();
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    for (const v1::TensorEntry& e : rank.tensors()) ranges.emplace_back(e.offset(), e.offset() + e.size());
    std::sort(ranges.begin(), ranges.end());
    for (size_t i = 0; i < ranges.size(); ++i) {
      EXPECT_LE(ranges[i].second, rank.allocations(0).size());
      if (i > 0) {
        EXPECT_LE(ranges[i - 1].second, ranges[i].first);
      }
    }
  }
  for (int d = 0; d < kDevices; ++d) EXPECT_EQ(load.accounting().usage(d).used, per_device[d]) << "device " << d;
  EXPECT_EQ(model.manifest.resident_bytes(), total);
}

using Case = std::tuple<int, v1::Scheme, v1::ScaleScope>;

class TpLoadTest : public ::testing::TestWithParam<Case> {};

void ExpectEveryRankHoldsItsSliceOfTheReference(TpLoad& load, int tp, v1::Scheme scheme, v1::ScaleScope scope) {
  const TpCheckpoint checkpoint = MakeTpCheckpoint();
  auto model = load.Load(checkpoint, {scheme, scope, FirstDevices(tp), {}});
  ASSERT_TRUE(model.ok()) << model.status();
  ASSERT_EQ(model->manifest.ranks_size(), tp);
  auto layout = OutputLayout::Create(scheme, {});
  ASSERT_TRUE(layout.ok());
  std::vector<std::map<std::string, std::string>> ranks;
  for (int r = 0; r < tp; ++r) ranks.push_back(load.RankTensors(*model, r));

  for (const TpTensor& t : checkpoint.tensors) {
    SCOPED_TRACE(t.name);
    const TensorOutputs outputs = layout->For(t.name, t.dtype, t.shape);
    std::optional<Quantized> whole;
    if (outputs.quantized) whole = Reference(outputs.scheme, t.dtype, t.bytes, t.shape);
    std::string concatenated;
    for (int r = 0; r < tp; ++r) {
      SCOPED_TRACE(absl::StrCat("rank ", r));
      const Part part = ExpectedPart(t, tp, r);
      const v1::TensorEntry* entry = Entry(model->manifest.ranks(r), t.name);
      ASSERT_NE(entry, nullptr);
      const std::vector<int64_t> shape = SliceShape(t.shape, part);
      EXPECT_EQ(std::vector<int64_t>(entry->shape().begin(), entry->shape().end()), shape);
      if (part.dim >= 0 && part.length != t.shape[part.dim]) {
        ASSERT_TRUE(entry->has_slice());
        EXPECT_EQ(entry->slice().dim(), static_cast<uint32_t>(part.dim));
        EXPECT_EQ(entry->slice().begin(), part.begin);
        EXPECT_EQ(std::vector<int64_t>(entry->slice().full_shape().begin(), entry->slice().full_shape().end()), t.shape);
      } else {
        EXPECT_FALSE(entry->has_slice());
      }
      const std::string& bytes = ranks[r][t.name];
      const std::string source = Slice(t.bytes, t.shape, kernels::DTypeSize(t.dtype), part);
      if (!outputs.quantized) {
        EXPECT_TRUE(bytes == source) << "stored bytes differ";
        continue;
      }
      const std::string& scales = ranks[r][outputs.scale.name];
      if (scope == v1::SCALE_SCOPE_TENSOR || part.dim < 0) {
        EXPECT_TRUE(bytes == Slice(whole->fp8, t.shape, 1, part)) << "FP8 bytes differ from the whole tensor's slice";
        EXPECT_TRUE(scales == ScalesOfPart(outputs.scheme, *whole, part)) << "scales differ";
      } else {
        const Quantized alone = Reference(outputs.scheme, t.dtype, source, shape);
        EXPECT_TRUE(bytes == alone.fp8) << "FP8 bytes differ from the slice quantized alone";
        EXPECT_TRUE(scales == alone.scales) << "scales differ from the slice's own";
      }
      if (part.dim == 0) concatenated += bytes;
    }
    // Scope tensor: the ranks' FP8 bytes, put back together, are the single-device bytes.
    const Part first = ExpectedPart(t, tp, 0);
    const bool kv_shared = tp > 2 && absl::StrContains(t.name, "_proj.weight") &&
                           (absl::StrContains(t.name, "k_proj") || absl::StrContains(t.name, "v_proj"));
    if (outputs.quantized && scope == v1::SCALE_SCOPE_TENSOR && first.dim == 0 && !kv_shared) {
      EXPECT_TRUE(concatenated == whole->fp8) << "concatenated ranks differ from the single-device bytes";
    }
    if (outputs.quantized && first.dim == 1 && scope == v1::SCALE_SCOPE_TENSOR) {
      std::string rebuilt;
      for (int64_t row = 0; row < t.shape[0]; ++row) {
        for (int r = 0; r < tp; ++r) rebuilt += ranks[r][t.name].substr(row * (t.shape[1] / tp), t.shape[1] / tp);
      }
      EXPECT_TRUE(rebuilt == whole->fp8) << "ranks side by side differ from the single-device bytes";
    }
    if (outputs.quantized && outputs.scheme == kernels::Scheme::kPerTensor && scope == v1::SCALE_SCOPE_TENSOR) {
      for (int r = 1; r < tp; ++r) EXPECT_TRUE(ranks[r][outputs.scale.name] == ranks[0][outputs.scale.name]);
    }
    if (first.dim < 0) {
      for (int r = 1; r < tp; ++r) {
        EXPECT_TRUE(ranks[r][t.name] == ranks[0][t.name]) << "replicated tensor differs on rank " << r;
      }
    }
  }
  ExpectAccountingMatchesManifest(load, *model);
  model = absl::CancelledError("dropped");
  for (int d = 0; d < kDevices; ++d) EXPECT_EQ(load.accounting().usage(d).used, 0u);
}

TEST_P(TpLoadTest, EveryRankHoldsItsSliceOfTheReference) {
  const auto [tp, scheme, scope] = GetParam();
  TpLoad load;
  ExpectEveryRankHoldsItsSliceOfTheReference(load, tp, scheme, scope);
}

// Scales taken from copies of the tensors' chunks (--scales-from-slots on the CUDA
// backend): the same bytes and scales, and the chunks really were used.
class TpLoadTakingScalesWhileCopyingTest : public ::testing::TestWithParam<Case> {};

TEST_P(TpLoadTakingScalesWhileCopyingTest, EveryRankHoldsItsSliceOfTheReference) {
  const auto [tp, scheme, scope] = GetParam();
  TpLoad load(/*scales_while_copying=*/true);
  ExpectEveryRankHoldsItsSliceOfTheReference(load, tp, scheme, scope);
  EXPECT_GT(load.backend().chunks.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Tp, TpLoadTakingScalesWhileCopyingTest,
    ::testing::Combine(::testing::Values(1, 2), ::testing::Values(v1::SCHEME_PER_CHANNEL, v1::SCHEME_BLOCK),
                       ::testing::Values(v1::SCALE_SCOPE_TENSOR, v1::SCALE_SCOPE_SHARD)),
    [](const ::testing::TestParamInfo<Case>& info) {
      return absl::StrCat("tp", std::get<0>(info.param), "_", v1::Scheme_Name(std::get<1>(info.param)), "_",
                          v1::ScaleScope_Name(std::get<2>(info.param)));
    });

// Per-tensor tensors parked in their destinations (--park-per-tensor): the first
// rows stored with their amax taken on the way, converted in place after the amax of
// the rest, in many 16 KiB runs: the same bytes and scales, and tensors really parked
// (a rank with its own scale: one rank, scope shard or a replicated tensor).
class TpLoadParkingTest : public ::testing::TestWithParam<Case> {};

TEST_P(TpLoadParkingTest, EveryRankHoldsItsSliceOfTheReference) {
  const auto [tp, scheme, scope] = GetParam();
  TpLoad load(/*scales_while_copying=*/false, /*park=*/true);
  ExpectEveryRankHoldsItsSliceOfTheReference(load, tp, scheme, scope);
  EXPECT_GT(load.backend().parked.load(), 0);
  EXPECT_EQ(load.backend().rests_in_arena.load(), 0);
}

// --park-rest-in-arena: the rest of a parked tensor held in the arena's lot (the
// destinations of the tensors placed last) where it has room, quantized from there:
// the same bytes and scales. One reader: every tensor before the lot's is placed
// before the lot closes, so rests are held there for sure.
TEST_P(TpLoadParkingTest, WithTheRestInTheArenaEveryRankHoldsItsSliceOfTheReference) {
  const auto [tp, scheme, scope] = GetParam();
  TpLoad load(/*scales_while_copying=*/false, /*park=*/true, /*rest_in_arena=*/true);
  load.read_threads = 1;
  ExpectEveryRankHoldsItsSliceOfTheReference(load, tp, scheme, scope);
  EXPECT_GT(load.backend().parked.load(), 0);
  EXPECT_GT(load.backend().rests_in_arena.load(), 0);
}

// The same with 8 readers whose writes are slowed: readers hold the lot's leases
// while others reach the tensors it borrows from, which must wait for them (the lot
// closes first); the bytes are still the reference's whichever way the race goes.
TEST_P(TpLoadParkingTest, WithTheRestInTheArenaReadersThatReachTheLotsTensorsWaitForItsLeases) {
  const auto [tp, scheme, scope] = GetParam();
  TpLoad load(/*scales_while_copying=*/false, /*park=*/true, /*rest_in_arena=*/true);
  load.backend().amax_write_delay = std::chrono::milliseconds(20);
  ExpectEveryRankHoldsItsSliceOfTheReference(load, tp, scheme, scope);
  EXPECT_GT(load.backend().parked.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Tp, TpLoadParkingTest,
    ::testing::Combine(::testing::Values(1, 2, 4), ::testing::Values(v1::SCHEME_PER_TENSOR),
                       ::testing::Values(v1::SCALE_SCOPE_TENSOR, v1::SCALE_SCOPE_SHARD)),
    [](const ::testing::TestParamInfo<Case>& info) {
      return absl::StrCat("tp", std::get<0>(info.param), "_", v1::ScaleScope_Name(std::get<2>(info.param)));
    });

INSTANTIATE_TEST_SUITE_P(
    Tp, TpLoadTest,
    ::testing::Combine(::testing::Values(1, 2, 4, 8),
                       ::testing::Values(v1::SCHEME_PER_TENSOR, v1::SCHEME_PER_CHANNEL, v1::SCHEME_BLOCK,
                                         v1::SCHEME_NONE),
                       ::testing::Values(v1::SCALE_SCOPE_TENSOR, v1::SCALE_SCOPE_SHARD)),
    [](const ::testing::TestParamInfo<Case>& info) {
      return absl::StrCat("tp", std::get<0>(info.param), "_", v1::Scheme_Name(std::get<1>(info.param)), "_",
                          v1::ScaleScope_Name(std::get<2>(info.param)));
    });

TEST(TpLoad, ScopeShardGivesEachRankItsOwnPerTensorScale) {
  TpLoad load;
  auto model = load.Load(MakeTpCheckpoint(), {v1::SCHEME_PER_TENSOR, v1::SCALE_SCOPE_SHARD, FirstDevices(4), {}});
  ASSERT_TRUE(model.ok()) << model.status();
  std::set<std::string> scales;
  for (int r = 0; r < 4; ++r) scales.insert(load.RankTensors(*model, r)["model.layers.0.self_attn.q_proj.weight_scale"]);
  EXPECT_EQ(scales.size(), 4u);
}

TEST(TpLoad, KeyValueHeadsAreSharedByTheRanksOfOneHead) {
  TpLoad load;
  auto model = load.Load(MakeTpCheckpoint(), {v1::SCHEME_PER_CHANNEL, v1::SCALE_SCOPE_TENSOR, FirstDevices(8), {}});
  ASSERT_TRUE(model.ok()) << model.status();
  std::vector<std::string> k;
  for (int r = 0; r < 8; ++r) k.push_back(load.RankTensors(*model, r)["model.layers.0.self_attn.k_proj.weight"]);
  for (int r = 1; r < 4; ++r) EXPECT_TRUE(k[r] == k[0]);
  for (int r = 5; r < 8; ++r) EXPECT_TRUE(k[r] == k[4]);
  EXPECT_FALSE(k[0] == k[4]);
}

TEST(TpLoad, RanksGoOnTheDevicesThePlacementLists) {
  TpLoad load;
  auto model = load.Load(MakeTpCheckpoint(), {v1::SCHEME_PER_TENSOR, v1::SCALE_SCOPE_TENSOR, {6, 1}, {}});
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->manifest.ranks(0).device(), 6u);
  EXPECT_EQ(model->manifest.ranks(1).device(), 1u);
  EXPECT_EQ(model->arenas[0]->device(), 6);
  ExpectAccountingMatchesManifest(load, *model);
  EXPECT_EQ(load.accounting().usage(0).used, 0u);
}

TEST(TpLoad, AnUnevenSplitFailsNamingTheTensorAndFreesEverything) {
  TpLoad load;
  auto model = load.Load(MakeTpCheckpoint(690), {v1::SCHEME_PER_TENSOR, v1::SCALE_SCOPE_TENSOR, FirstDevices(8), {}});
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(model.status().message(),
            "tensor 'model.layers.0.mlp.gate_proj.weight' [690, 256]: dim 0 (690) is not divisible by tp_size 8");
  for (int d = 0; d < kDevices; ++d) EXPECT_EQ(load.accounting().usage(d).used, 0u);
}

TEST(TpLoad, BlockSplitPointsOffMultiplesOf128Fail) {
  TpLoad load;
  auto model = load.Load(MakeTpCheckpoint(1152), {v1::SCHEME_BLOCK, v1::SCALE_SCOPE_TENSOR, FirstDevices(2), {}});
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(model.status().message(),
            "tensor 'model.layers.0.mlp.gate_proj.weight' [1152, 256]: the block scheme needs split points on "
            "multiples of 128, but dim 0 (1152) splits at 576 for tp_size 2");
}

TEST(TpLoad, ARuleWithAllowUnevenCutsCeilSizedPartsThatStillMatchTheWholeTensor) {
  TpLoad load;
  v1::ShardingRule rule;
  rule.set_pattern(R"(.*\.gate_proj\.weight)");
  rule.set_split(v1::SPLIT_COLUMN);
  rule.set_allow_uneven(true);
  const TpCheckpoint checkpoint = MakeTpCheckpoint(1001);
  auto model = load.Load(checkpoint, {v1::SCHEME_PER_TENSOR, v1::SCALE_SCOPE_TENSOR, FirstDevices(8), {rule}});
  ASSERT_TRUE(model.ok()) << model.status();
  const std::string name = "model.layers.0.mlp.gate_proj.weight";
  const TpTensor& t = checkpoint.Get(name);
  const Quantized whole = Reference(kernels::Scheme::kPerTensor, t.dtype, t.bytes, t.shape);
  std::string concatenated;
  for (int r = 0; r < 8; ++r) {
    const v1::TensorEntry* entry = Entry(model->manifest.ranks(r), name);
    EXPECT_EQ(entry->shape(0), r < 7 ? 126 : 119);
    concatenated += load.RankTensors(*model, r)[name];
  }
  EXPECT_TRUE(concatenated == whole.fp8);
}

TEST(TpLoad, ARuleOverridesTheBuiltInSplit) {
  TpLoad load;
  v1::ShardingRule rule;
  rule.set_pattern(R"(.*\.o_proj\.weight)");
  rule.set_split(v1::SPLIT_REPLICATE);
  auto model = load.Load(MakeTpCheckpoint(), {v1::SCHEME_PER_TENSOR, v1::SCALE_SCOPE_TENSOR, FirstDevices(2), {rule}});
  ASSERT_TRUE(model.ok()) << model.status();
  const std::string name = "model.layers.0.self_attn.o_proj.weight";
  EXPECT_EQ(Entry(model->manifest.ranks(1), name)->shape(1), 1024);
  EXPECT_TRUE(load.RankTensors(*model, 0)[name] == load.RankTensors(*model, 1)[name]);
}

TEST(TpLoad, BadPlacementsAreInvalidArgument) {
  TpLoad load;
  v1::ShardingRule rule;
  rule.set_pattern("[");
  rule.set_split(v1::SPLIT_ROW);
  auto bad_rule = load.Load(MakeTpCheckpoint(), {v1::SCHEME_PER_TENSOR, v1::SCALE_SCOPE_TENSOR, FirstDevices(2), {rule}});
  EXPECT_EQ(bad_rule.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(bad_rule.status().message(), "placement.sharding_rules[0]: pattern '[' is not a regular expression"))
      << bad_rule.status();
  auto twice = load.Load(MakeTpCheckpoint(), {v1::SCHEME_PER_TENSOR, v1::SCALE_SCOPE_TENSOR, {3, 3}, {}});
  EXPECT_EQ(twice.status().message(), "placement.devices lists device 3 twice");
  auto missing = load.Load(MakeTpCheckpoint(), {v1::SCHEME_PER_TENSOR, v1::SCALE_SCOPE_TENSOR, {0, 9}, {}});
  EXPECT_EQ(missing.status().message(), "device 9 does not exist (8 devices)");
  auto huge = load.Load(MakeTpCheckpoint(), {v1::SCHEME_PER_TENSOR, v1::SCALE_SCOPE_TENSOR,
                                             std::vector<uint32_t>(65, 0), {}});
  EXPECT_EQ(huge.status().message(), "placement.tp_size 65 is more than 64");
}

TEST(TpLoad, ACheckpointAlreadyInFp8LoadsWithOneRankOnly) {
  TpCheckpoint checkpoint = MakeTpCheckpoint();
  for (TpTensor& t : checkpoint.tensors) {
    if (t.name != "model.layers.0.mlp.up_proj.weight") continue;
    t.dtype = kernels::DType::kF8E4M3;
    t.bytes.resize(t.bytes.size() / 2);
  }
  TpLoad load;
  EXPECT_TRUE(load.Load(checkpoint, {v1::SCHEME_PER_TENSOR, v1::SCALE_SCOPE_TENSOR, FirstDevices(1), {}}).ok());
  auto model = load.Load(checkpoint, {v1::SCHEME_PER_TENSOR, v1::SCALE_SCOPE_TENSOR, FirstDevices(2), {}});
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(model.status().message(),
            "tensor 'model.layers.0.mlp.up_proj.weight' in shard 'model-00002-of-00002.safetensors' is already "
            "F8_E4M3: checkpoints in FP8 load with tp_size 1 only");
}

// The test checkpoint with a NaN in q_proj at element 179205 (row 700, column 5).
TpCheckpoint CheckpointWithANaN() {
  TpCheckpoint checkpoint = MakeTpCheckpoint();
  for (TpTensor& t : checkpoint.tensors) {
    if (t.name != "model.layers.0.self_attn.q_proj.weight") continue;
    const uint16_t nan = 0x7FC0;
    std::memcpy(&t.bytes[(700 * 256 + 5) * 2], &nan, 2);
  }
  return checkpoint;
}

TEST(TpLoad, ANonFiniteValueIsNamedByItsIndexInTheWholeTensor) {
  const TpCheckpoint checkpoint = CheckpointWithANaN();
  std::string messages[2];
  int i = 0;
  for (int tp : {1, 4}) {
    TpLoad load;
    auto model = load.Load(checkpoint, {v1::SCHEME_PER_TENSOR, v1::SCALE_SCOPE_TENSOR, FirstDevices(tp), {}});
    EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
    messages[i++] = std::string(model.status().message());
  }
  EXPECT_NE(messages[0].find("tensor 'model.layers.0.self_attn.q_proj.weight': non-finite value at element 179205 "),
            std::string::npos)
      << messages[0];
  EXPECT_EQ(messages[0], messages[1]);
}

TEST(TpLoad, ANonFiniteValueInAChunkIsNamedByItsIndexInTheWholeTensor) {
  const TpCheckpoint checkpoint = CheckpointWithANaN();
  std::string messages[2];
  for (bool while_copying : {false, true}) {
    TpLoad load(while_copying);
    auto model = load.Load(checkpoint, {v1::SCHEME_PER_CHANNEL, v1::SCALE_SCOPE_TENSOR, FirstDevices(1), {}});
    EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
    messages[while_copying] = std::string(model.status().message());
    if (while_copying) EXPECT_GT(load.backend().chunks.load(), 0);
  }
  EXPECT_NE(messages[0].find("non-finite value at element 179205"), std::string::npos) << messages[0];
  EXPECT_EQ(messages[0], messages[1]);
}

// Where parking sees a NaN (in the parked rows or in the rest), the load fails with the
// message of the unparked route; under saturate both routes give the same bytes.
TEST(TpLoad, ANonFiniteValueInAParkedTensorIsNamedAsWithoutParkingAndSaturatesAlike) {
  for (int row : {100, 700}) {  // q_proj [1024, 256]: rows 0-511 park
    SCOPED_TRACE(absl::StrCat("NaN in row ", row));
    TpCheckpoint checkpoint = MakeTpCheckpoint();
    for (TpTensor& t : checkpoint.tensors) {
      if (t.name != "model.layers.0.self_attn.q_proj.weight") continue;
      const uint16_t nan = 0x7FC0;
      std::memcpy(&t.bytes[(row * 256 + 5) * 2], &nan, 2);
    }
    // Without parking, parked, and parked with the rest in the arena (one reader: the
    // rest of q_proj, early in the checkpoint, is held there for sure).
    std::string messages[3];
    std::map<std::string, std::string> saturated[3];
    for (int mode : {0, 1, 2}) {
      TpLoad load(false, /*park=*/mode > 0, /*rest_in_arena=*/mode == 2);
      if (mode == 2) load.read_threads = 1;
      auto failed = load.Load(checkpoint, {v1::SCHEME_PER_TENSOR, v1::SCALE_SCOPE_TENSOR, FirstDevices(1), {}});
      EXPECT_EQ(failed.status().code(), absl::StatusCode::kInvalidArgument);
      messages[mode] = std::string(failed.status().message());
      auto model = load.Load(checkpoint, {v1::SCHEME_PER_TENSOR, v1::SCALE_SCOPE_TENSOR, FirstDevices(1), {},
                                          v1::NONFINITE_SATURATE});
      ASSERT_TRUE(model.ok()) << model.status();
      saturated[mode] = load.RankTensors(*model, 0);
      if (mode > 0) EXPECT_GT(load.backend().parked.load(), 0);
      if (mode == 2) EXPECT_GT(load.backend().rests_in_arena.load(), 0);
    }
    EXPECT_NE(messages[0].find(absl::StrCat("non-finite value at element ", row * 256 + 5)), std::string::npos)
        << messages[0];
    EXPECT_EQ(messages[0], messages[1]);
    EXPECT_EQ(messages[0], messages[2]);
    EXPECT_TRUE(saturated[0] == saturated[1]);
    EXPECT_TRUE(saturated[0] == saturated[2]);
    EXPECT_EQ(saturated[1]["model.layers.0.self_attn.q_proj.weight"][row * 256 + 5], '\x7E');
  }
}

}  // namespace
}  // namespace weightd::testing
