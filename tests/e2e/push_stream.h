// Test helpers that drive the push protocol by hand, to break it on purpose: a
// LoadModel call held open while the test feeds (or fails to feed) its shards.
// Not thread-safe: one object per thread.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "tests/e2e/checkpoint_files.h"  // Shard
#include "tests/e2e/daemon_process.h"
#include "weightd/v1/loader.grpc.pb.h"

namespace weightd::testing {

// A valid one-tensor shard: F32 "<name>" of `floats` values 1.0.
std::string OneTensorShard(const std::string& name, int floats);

// LoadModel with a push source naming `shards`; the first event (accepted) has arrived.
class PushLoad {
 public:
  PushLoad(const DaemonProcess& daemon, const std::string& model, const std::vector<std::string>& shards);
  // Reads the remaining events and returns the call's status.
  grpc::Status Finish();
  v1::Loader::Stub& stub() { return *stub_; }
  const std::string& model() const { return model_; }

 private:
  std::string model_;
  std::unique_ptr<v1::Loader::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<v1::LoadEvent>> reader_;
};

// One PushShards stream of a PushLoad; `open` goes with the first Write.
class ShardStream {
 public:
  ShardStream(PushLoad& load, const std::string& file, uint64_t size, const std::string& sha256 = "");
  bool Write(const std::string& bytes);
  grpc::Status Close();  // WritesDone, then the call's status
  void Cancel();         // the client goes away mid-stream
  grpc::Status status() { return writer_->Finish(); }

 private:
  v1::ShardOpen open_;
  bool opened_ = false;
  grpc::ClientContext context_;
  v1::PushSummary summary_;
  std::unique_ptr<grpc::ClientWriter<v1::ShardChunk>> writer_;
};

// Pushes `file` whole as the shard `name` of `load`; the stream's status.
grpc::Status PushWhole(PushLoad& load, const std::string& name, const std::string& file);

}  // namespace weightd::testing
