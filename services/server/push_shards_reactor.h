// Receives one shard file of a push load. Messages are taken raw (ByteBuffer)
// and read in place (push_message.h): a data message's bytes go from gRPC's
// slices straight to the parser, with no protobuf copy. Reads are pipelined: the next read
// starts as soon as a message arrives, so receiving overlaps parsing, hashing and
// writing. Arrived messages wait in a bounded per-stream queue (kMaxHeldChunks,
// counting the one being processed and the one being read); reads pause while it
// is full and resume as processing drains it, so gRPC flow control still bounds
// what the daemon buffers. One drain task per stream runs on the executor at a
// time and processes messages strictly in order. After the header, draining
// pauses until the load has every header and its memory (the plan); reading goes
// on until the queue is full. The end of the stream is handled only after every
// queued message. Any error in an expected shard fails the whole load; a stream
// for a shard the load does not expect fails alone.
//
// The transport is a template parameter: gRPC's ServerReadReactor<ByteBuffer>
// (LoaderService::PushShards), or a raw connection on the Unix socket
// (raw_push_call.h), whose read ends carry a reason of their own (`cut`), named
// in the stream's error.
//
// Thread-safety: `mu_` guards the queue and the read/drain/finish flags, which
// the gRPC reactions and the drain task share. Everything else belongs to the
// drain task. Finish is called once, outside `mu_`, as the caller's last touch
// of `this`: by the drain task, or by CutIfSilent's timer before any read completed
// (no drain task has begun then).
#pragma once

#include <grpcpp/grpcpp.h>
#include <openssl/evp.h>

#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "services/deadline_timer.h"
#include "services/executor.h"
#include "services/load/host_budget.h"
#include "services/load/push_pinning.h"
#include "services/registry/registry.h"
#include "services/safetensors/parser.h"
#include "services/server/push_message.h"
#include "services/server/raw_push_call.h"
#include "services/sources/source_hooks.h"
#include "weightd/v1/loader.pb.h"

namespace weightd {

// Why a transport's reads ended early, and where its reply's PushSummary goes.
inline absl::Status CutOf(const grpc::ServerReadReactor<grpc::ByteBuffer>&) { return absl::OkStatus(); }
inline absl::Status CutOf(const RawPushCall& call) { return call.cut(); }
inline grpc::ByteBuffer* ResponseOf(grpc::ServerReadReactor<grpc::ByteBuffer>&, grpc::ByteBuffer* given) {
  return given;
}
inline grpc::ByteBuffer* ResponseOf(RawPushCall& call, grpc::ByteBuffer*) { return call.response(); }

template <class Transport>
class PushShardsReactor : public Transport {
 public:
  // Messages a stream holds at most: queued, being processed and being read.
  static constexpr int kMaxHeldChunks = 3;

  // `named_model` and `named_file`: the stream's metadata (push_framing.h), may be empty.
  // `placement` (may be null: inline) places gathered tensors while the drain
  // gathers the next (ShardWriter::PlaceOffThread); it must not be `executor`.
  // `budget` (may be null: no limit) is --host-memory-limit's (services/load/host_budget.h).
  // `response` receives the serialized PushSummary (ignored for a raw call: its own).
  PushShardsReactor(Registry& registry, Executor& executor, Executor* placement, HostBudget* budget,
                    SourceHooks hooks,
                    safetensors::ParseLimits limits, PushPinning* pinning, grpc::ByteBuffer* response,
                    std::string named_model = "", std::string named_file = "");
  ~PushShardsReactor() override;

  void OnReadDone(bool ok) override;
  void OnDone() override;
  // gRPC streams (the raw transport bounds its first frame itself): a stream
  // that has received nothing, not even its end, `after` from now is answered
  // DEADLINE_EXCEEDED (--push-idle-timeout-seconds). `timer` outlives the call.
  void CutIfSilent(DeadlineTimer& timer, std::chrono::milliseconds after);

 private:
  // The drain task: processes queued messages in order until the queue is empty,
  // the plan is awaited, or the stream is finished. Runs on the executor.
  void Drain();
  // Processes one message. Returns true to go on, false once the header is
  // complete: the drain then awaits the plan.
  absl::StatusOr<bool> Consume(grpc::ByteBuffer buffer);
  // Feeds the pending data bytes as far as host memory admits their gathered
  // tensors: true once all are fed, false when the drain must wait (OnAdmitted).
  absl::StatusOr<bool> FeedPending();
  void DoneFeeding();
  // A gathered tensor this stream waited for is admitted: the drain goes on.
  void OnAdmitted();
  // A message is processed: the next read may start.
  void Recycle();
  // Releases the host memory charged for the message being fed.
  void GiveBackCharge();
  void AwaitPlan();
  absl::Status Open(const v1::ShardOpen& open);
  absl::Status EndOfStream();
  absl::Status EndedBeforeOpen();
  void OnResume(absl::Status status);
  // Under `mu_`: whether a read may start now; if so it is marked outstanding.
  bool TakeReadSlot();
  void Fail(const absl::Status& status);
  void Succeed();
  // CutIfSilent's deadline: Finish, unless a read has completed.
  void CutSilent(std::chrono::milliseconds after);

  Registry& registry_;
  Executor& executor_;
  Executor* placement_;
  HostBudget* budget_;
  SourceHooks hooks_;
  const safetensors::ParseLimits limits_;
  PushPinning* const pinning_;  // ShardWriter::PinGatheredTensors; may be null
  const PushPinning::Stream counted_;  // this stream, open while the reactor lives
  grpc::ByteBuffer* response_;
  v1::PushSummary summary_;  // owned by the drain task
  const std::string named_model_;
  const std::string named_file_;

  std::mutex mu_;
  grpc::ByteBuffer incoming_;            // target of the outstanding read
  std::deque<grpc::ByteBuffer> queue_;   // arrived, not yet processed
  int held_ = 0;                         // queued plus the one being processed
  bool reading_ = false;                 // a read is outstanding
  bool ended_ = false;                   // OnReadDone(false) seen: no more messages
  bool draining_ = false;                // a drain task is posted, running or awaiting the plan
  bool finished_ = false;                // Finish is called or about to be
  bool paused_ = false;                  // the drain waits for host memory (OnAdmitted resumes it)
  bool admitted_early_ = false;          // OnAdmitted came before the drain paused
  bool heard_ = false;                   // a read has completed (a message or the end)

  DeadlineTimer* silence_timer_ = nullptr;  // CutIfSilent's; cancelled in OnDone
  uint64_t silence_id_ = 0;

  // Owned by the drain task.
  std::string file_;
  std::string expected_sha256_;
  EVP_MD_CTX* sha_ = nullptr;
  std::shared_ptr<LoadJob> job_;
  std::unique_ptr<safetensors::ShardParser> parser_;
  ShardWriter* writer_ = nullptr;  // owned by the job; valid until OnShardDone
  // The message being fed, or the one whose data begins with the end of the
  // header (held while the drain awaits the plan).
  std::unique_ptr<PushMessage> current_;
  bool feeding_ = false;                   // pending_ (pieces of current_) is being fed
  std::vector<std::string_view> pending_;  // its pieces not fed yet, from pending_next_ on
  size_t pending_next_ = 0;
  uint64_t charged_ = 0;                   // host memory charged for them (their whole message)
};

using GrpcPushShardsReactor = PushShardsReactor<grpc::ServerReadReactor<grpc::ByteBuffer>>;
using RawPushShardsReactor = PushShardsReactor<RawPushCall>;

}  // namespace weightd
