#include "services/peer/peer_description.h"

#include <string>

#include "gtest/gtest.h"
#include "services/load/spec_validation.h"

namespace weightd {
namespace {

std::vector<ShardInput> Shards() {
  const std::string json =
      R"({"__metadata__":{"format":"pt"},"a.weight":{"dtype":"BF16","shape":[4,4],"data_offsets":[0,32]},)"
      R"("a.norm":{"dtype":"BF16","shape":[4],"data_offsets":[32,40]}})";
  auto header = safetensors::ParseShardHeaderJson("model.safetensors", json, {});
  EXPECT_TRUE(header.ok()) << header.status();
  return {ShardInput{"model.safetensors", *header}};
}

v1::LoadModelRequest Spec(v1::Scheme scheme, uint32_t tp = 1, v1::ScaleScope scope = v1::SCALE_SCOPE_TENSOR) {
  v1::LoadModelRequest spec;
  spec.mutable_quantization()->set_scheme(scheme);
  spec.mutable_quantization()->set_scale_scope(scope);
  spec.mutable_placement()->set_tp_size(tp);
  return NormalizeSpec(spec);
}

TEST(PeerDescriptionTest, WhatOneDaemonDescribesTheOtherReadsBackWithTheSameDigest) {
  const auto shards = Shards();
  const v1::LoadModelRequest spec = Spec(v1::SCHEME_PER_TENSOR);
  auto items = PeerItemsOf(shards, spec.quantization());
  ASSERT_TRUE(items.ok());
  ASSERT_EQ(items->size(), 3u);  // codes, scale, the stored norm
  EXPECT_EQ((*items)[0].name, "a.weight");
  EXPECT_EQ((*items)[0].size, 16u);
  EXPECT_EQ((*items)[1].name, "a.weight_scale");
  EXPECT_EQ((*items)[2].name, "a.norm");
  const v1::PeerModel model = DescribeModel("m", spec, shards, "{}", *items);
  auto back = ReadDescription(model, {}, "peer-a");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(SourceDigest(back->shards, back->config_json), model.source_digest());
  EXPECT_EQ(back->shards[0].header.metadata, shards[0].header.metadata);
  EXPECT_TRUE(CheckSameItems(model, *items, "peer-a").ok());
  EXPECT_TRUE(CheckPeerCompatible(model, spec, "peer-a").ok());

  v1::PeerModel changed = model;
  changed.set_config_json("{\"x\":1}");
  EXPECT_EQ(ReadDescription(changed, {}, "peer-a").status().code(), absl::StatusCode::kDataLoss);
  changed = model;
  changed.mutable_shards(0)->set_file("../etc");
  EXPECT_EQ(ReadDescription(changed, {}, "peer-a").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(PeerDescriptionTest, AnotherQuantizationOrAShardScopedSplitIsRefusedNamingBothSides) {
  const auto shards = Shards();
  const v1::LoadModelRequest spec = Spec(v1::SCHEME_PER_TENSOR);
  const v1::PeerModel model = DescribeModel("m", spec, shards, "{}", *PeerItemsOf(shards, spec.quantization()));
  absl::Status block = CheckPeerCompatible(model, Spec(v1::SCHEME_BLOCK), "peer-a");
  EXPECT_EQ(block.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(block.message().find("peer peer-a holds model 'm' as SCHEME_PER_TENSOR"), std::string::npos) << block;
  EXPECT_NE(block.message().find("this load asks for SCHEME_BLOCK"), std::string::npos) << block;
  const v1::LoadModelRequest shard = Spec(v1::SCHEME_PER_TENSOR, 1, v1::SCALE_SCOPE_SHARD);
  const v1::PeerModel sharded = DescribeModel("m", shard, shards, "{}", *PeerItemsOf(shards, shard.quantization()));
  EXPECT_TRUE(CheckPeerCompatible(sharded, shard, "peer-a").ok());  // one rank on both sides
  EXPECT_EQ(CheckPeerCompatible(sharded, Spec(v1::SCHEME_PER_TENSOR, 2, v1::SCALE_SCOPE_SHARD), "peer-a").code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace weightd
