// One raw push connection on the Unix socket (base/raw_push_wire.h), shaped as
// gRPC's ServerReadReactor<ByteBuffer> so that PushShardsReactor runs on either:
// StartRead asks for the next frame, OnReadDone(ok) delivers it (false: the end
// frame came, or the connection ended; cut() tells which), Finish answers, and
// OnDone comes last, once, after every OnReadDone has returned.
//
// One thread per connection reads the frames it is asked for and writes the
// reply; not reading is the flow control (the client's writes block in the
// kernel). Finish may come from any thread at any time: a read in progress is
// cut short (shutdown(SHUT_RD)) and delivered as OnReadDone(false), as gRPC does.
// RawPushCalls tracks the live connections, so the daemon's shutdown can end
// them and wait for them.
// Thread-safety: StartRead and Finish from any thread; the reactions run on the
// connection's thread.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>

#include "absl/status/status.h"
#include "base/unique_fd.h"

namespace weightd {

// The daemon's live raw push connections.
class RawPushCalls {
 public:
  // At most `max_live` connections at once (--max-raw-push-connections): one
  // more is closed before its greeting, and its client pushes over gRPC instead
  // (a thread per connection here, none per gRPC stream).
  explicit RawPushCalls(size_t max_live) : max_live_(max_live) {}

  // Ends every connection (their reads see the end; their streams fail as cut,
  // and the reply still goes out)
  // and waits until each has finished, at most until `deadline`. Connections that
  // come later are answered UNAVAILABLE at once. Returns how many were left.
  size_t Shutdown(std::chrono::steady_clock::time_point deadline);

 private:
  friend class RawPushCall;
  // Keys are the calls' addresses, never dereferenced: a call is deleted (its
  // OnDone) before it is removed, so Shutdown waits for that too. The socket is
  // forgotten before the call closes it (its number may be reused).
  // False when full or shutting down.
  bool Add(const void* call, int fd);
  void ForgetSocket(const void* call);
  void Remove(const void* call);

  std::mutex mu_;
  std::condition_variable removed_;
  std::map<const void*, int> live_;  // call -> its socket, -1 once forgotten
  const size_t max_live_;
  bool shut_down_ = false;
  bool full_logged_ = false;  // refusals are logged once per time the limit is reached
};

class RawPushCall {
 public:
  virtual ~RawPushCall();

  // Starts the connection's thread on `fd` (accepted, its magic already read):
  // it sends the magic back and serves reads. `max_frame_bytes`: PushFrameReader's.
  // Until the first frame is whole, a read that gets no byte for
  // `first_frame_timeout` (--push-idle-timeout-seconds; after it, the load's own
  // watchdog applies) ends the reads with DEADLINE_EXCEEDED: a silent client does
  // not hold a thread.
  // When `calls` is full or shutting down the connection is closed ungreeted.
  void Start(UniqueFd fd, uint32_t max_frame_bytes, std::chrono::milliseconds first_frame_timeout,
             RawPushCalls& calls);

  void StartRead(grpc::ByteBuffer* message);
  void Finish(grpc::Status status);
  virtual void OnReadDone(bool ok) = 0;
  virtual void OnDone() = 0;

  // Why the reads ended early: OK after the end frame (or a Finish), else the
  // reader's error (PushFrameReader::Next). Valid in and after OnReadDone(false).
  absl::Status cut() const;
  // Where the reply's PushSummary is put before Finish(OK).
  grpc::ByteBuffer* response() { return &response_; }

 private:
  void Run(uint32_t max_frame_bytes, std::chrono::milliseconds first_frame_timeout);
  void Reply();

  UniqueFd fd_;
  RawPushCalls* calls_ = nullptr;
  grpc::ByteBuffer response_;

  mutable std::mutex mu_;
  std::condition_variable wake_;
  grpc::ByteBuffer* target_ = nullptr;  // the read asked for
  bool finished_ = false;
  grpc::Status status_;
  absl::Status cut_;
};

}  // namespace weightd
