// Malformed checkpoints and broken push streams against the real daemon: each
// gets its precise status code, frees what it took, and the daemon keeps serving.
#include <filesystem>
#include <fstream>
#include <thread>

#include "client/cpp/channel.h"
#include "gtest/gtest.h"
#include "grpcpp/client_context.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "grpcpp/support/sync_stream.h"
#include "tests/e2e/checkpoint_files.h"
#include "tests/e2e/daemon_process.h"
#include "tests/e2e/push_stream.h"
#include "weightd/v1/loader.grpc.pb.h"

namespace weightd::testing {
namespace {

const std::string kGoodHeader = R"({"a.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";
const std::string kGoodData(16, '\x01');

struct MalformedCase {
  const char* name;
  std::string file;
  const char* code;
  const char* message_part;  // the message must name what is wrong
};

std::vector<MalformedCase> Cases() {
  return {
      {"truncated_shard", Shard(kGoodHeader, kGoodData.substr(0, 9)), "DATA_LOSS", "model.safetensors"},
      {"header_length_beyond_file", Shard(kGoodHeader, kGoodData, 4096), "INVALID_ARGUMENT", "model.safetensors"},
      {"overlapping_offsets",
       Shard(R"({"a.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
             R"("b.weight":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
             std::string(12, '\0')),
       "INVALID_ARGUMENT", "b.weight"},
      {"unknown_dtype", Shard(R"({"a.weight":{"dtype":"Q7","shape":[4],"data_offsets":[0,4]}})", std::string(4, 0)),
       "INVALID_ARGUMENT", "Q7"},
      {"shape_size_mismatch",
       Shard(R"({"a.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})", std::string(12, 0)),
       "INVALID_ARGUMENT", "a.weight"},
      {"oversized_header", Shard(kGoodHeader, kGoodData, 200ll << 20), "INVALID_ARGUMENT", "header"},
      {"non_utf8_name", Shard("{\"a\xff.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                              std::string(4, 0)),
       "INVALID_ARGUMENT", "UTF-8"},
      {"duplicate_names",
       Shard(R"({"a.weight":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
             R"("a.weight":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
             std::string(8, 0)),
       "INVALID_ARGUMENT", "a.weight"},
      {"not_json", Shard("{\"a.weight\": [", ""), "INVALID_ARGUMENT", "model.safetensors"},
  };
}

class MalformedE2ETest : public ::testing::Test {
 protected:
  void SetUp() override { daemon_.Start(); }

  void WriteModel(const std::string& name, const std::string& shard) {
    std::string dir = daemon_.model_root() + "/" + name;
    std::filesystem::create_directories(dir);
    std::ofstream(dir + "/model.safetensors", std::ios::binary) << shard;
    std::ofstream(dir + "/config.json") << "{}";
  }

  void ExpectServingAndEmpty() {
    EXPECT_EQ(daemon_.Ctl({"list"}).exit_code, 0);
    EXPECT_EQ(daemon_.Metric("weightd_device_memory_used_bytes{device=\"0\"}"), 0);
  }

  DaemonProcess daemon_;
};

TEST_F(MalformedE2ETest, EveryMalformedCheckpointGetsItsStatusByPathAndByPush) {
  for (const MalformedCase& c : Cases()) {
    SCOPED_TRACE(c.name);
    WriteModel(c.name, c.file);
    for (const char* source : {"path", "push"}) {
      SCOPED_TRACE(source);
      std::string model = std::string(c.name) + "-" + source;
      std::string flag = std::string(source) == "path" ? "--path=" + std::string(c.name)
                                                       : "--push=" + daemon_.model_root() + "/" + c.name;
      CommandResult result = daemon_.Ctl({"load", model, flag});
      EXPECT_EQ(result.exit_code, 1);
      EXPECT_NE(result.err.find(std::string(c.code) + ":"), std::string::npos) << result.err;
      EXPECT_NE(result.err.find(c.message_part), std::string::npos) << result.err;
      ExpectServingAndEmpty();
    }
  }
  // And a good model still loads afterwards.
  WriteModel("good", Shard(kGoodHeader, kGoodData));
  CommandResult good = daemon_.Ctl({"load", "good", "--path=good"});
  EXPECT_EQ(good.exit_code, 0) << good.err;
}

TEST_F(MalformedE2ETest, PushStreamEndingEarlyIsDataLoss) {
  PushLoad push(daemon_, "short", {"model.safetensors"});
  std::string file = Shard(kGoodHeader, kGoodData);
  ShardStream stream(push, "model.safetensors", file.size());
  stream.Write(file.substr(0, file.size() - 5));
  grpc::Status status = stream.Close();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS) << status.error_message();
  EXPECT_EQ(push.Finish().error_code(), grpc::StatusCode::DATA_LOSS);
  ExpectServingAndEmpty();
}

TEST_F(MalformedE2ETest, ChecksumMismatchIsDataLoss) {
  PushLoad push(daemon_, "sum", {"model.safetensors"});
  std::string file = Shard(kGoodHeader, kGoodData);
  ShardStream stream(push, "model.safetensors", file.size(), std::string(64, '0'));
  stream.Write(file);
  grpc::Status status = stream.Close();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS) << status.error_message();
  EXPECT_NE(status.error_message().find("sha256"), std::string::npos) << status.error_message();
  EXPECT_EQ(push.Finish().error_code(), grpc::StatusCode::DATA_LOSS);
  ExpectServingAndEmpty();
}

TEST_F(MalformedE2ETest, MalformedOpenIsInvalidArgument) {
  PushLoad push(daemon_, "badsha", {"model.safetensors"});
  std::string file = Shard(kGoodHeader, kGoodData);
  ShardStream stream(push, "model.safetensors", file.size(), "not-hex");
  stream.Write(file);
  grpc::Status status = stream.Close();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_NE(status.error_message().find("sha256"), std::string::npos) << status.error_message();
  // A malformed stream fails alone: the load still takes a good one.
  EXPECT_TRUE(PushWhole(push, "model.safetensors", file).ok());
  EXPECT_TRUE(push.Finish().ok());
}

// Bytes that are no ShardChunk (the daemon decodes PushShards messages itself):
// INVALID_ARGUMENT naming the shard, and the load fails with it.
TEST_F(MalformedE2ETest, AMessageThatIsNoShardChunkIsInvalidArgument) {
  PushLoad push(daemon_, "garbled", {"model.safetensors"});
  const std::string file = Shard(kGoodHeader, kGoodData);
  auto channel = client::MakeChannel(daemon_.grpc_address(), /*own_connection=*/true);
  const grpc::internal::RpcMethod method("/weightd.v1.Loader/PushShards",
                                         grpc::internal::RpcMethod::CLIENT_STREAMING, channel);
  grpc::ClientContext context;
  grpc::ByteBuffer reply;
  std::unique_ptr<grpc::ClientWriter<grpc::ByteBuffer>> writer(
      grpc::internal::ClientWriterFactory<grpc::ByteBuffer>::Create(channel.get(), method, &context, &reply));
  v1::ShardChunk first;
  first.mutable_open()->set_model_id("garbled");
  first.mutable_open()->set_shard_file("model.safetensors");
  first.mutable_open()->set_size(file.size());
  first.set_data(file.substr(0, 10));
  const std::string opening = first.SerializeAsString();
  // `data` declared 16 bytes long with 5 present: protobuf refuses it.
  const std::string garbled("\x12\x10short", 7);
  for (const std::string& bytes : {opening, garbled}) {
    grpc::Slice slice(bytes.data(), bytes.size());
    writer->Write(grpc::ByteBuffer(&slice, 1));
  }
  writer->WritesDone();
  const grpc::Status status = writer->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_NE(status.error_message().find("shard 'model.safetensors'"), std::string::npos) << status.error_message();
  EXPECT_NE(status.error_message().find("not a valid ShardChunk"), std::string::npos) << status.error_message();
  EXPECT_EQ(push.Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ExpectServingAndEmpty();
}

TEST_F(MalformedE2ETest, PushForAnUnknownModelIsNotFound) {
  auto stub = v1::Loader::NewStub(client::MakeChannel(daemon_.grpc_address()));
  grpc::ClientContext context;
  v1::PushSummary summary;
  auto writer = stub->PushShards(&context, &summary);
  v1::ShardChunk chunk;
  chunk.mutable_open()->set_model_id("nobody");
  chunk.mutable_open()->set_shard_file("model.safetensors");
  chunk.mutable_open()->set_size(100);
  writer->Write(chunk);
  writer->WritesDone();
  EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
  ExpectServingAndEmpty();
}

}  // namespace
}  // namespace weightd::testing
