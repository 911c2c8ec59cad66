// One ServePeer stream: a thread of its own reads each item of the range from
// the servable model in pieces (waiting for relayed items to land, and for the
// serving bandwidth), takes their CRC-32C and writes them; gRPC's threads only
// see the reactor's callbacks. Only that thread calls StartWrite and Finish;
// OnCancel just tells it to stop. The reactor deletes itself once gRPC is done
// with it and the thread has ended.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "services/peer/serve_limiter.h"
#include "services/peer/servable_model.h"
#include "weightd/v1/loader.pb.h"

namespace weightd {

// What every serving stream of a daemon shares.
struct PeerServing {
  ServeLimiter* limiter = nullptr;
  uint64_t message_bytes = 4 << 20;  // item bytes per message
  // Test hook (--test-corrupt-served-tensor): one byte of this tensor's first
  // message is flipped after its CRC-32C is taken, as a bad link would.
  std::string corrupt_tensor;
  std::function<void(const std::string& peer, uint64_t bytes)> on_served;  // may be empty
  std::function<void(int delta)> on_stream;                                 // may be empty
};

class PeerServeReactor : public grpc::ServerWriteReactor<v1::PeerMessage> {
 public:
  using Find = std::function<absl::StatusOr<std::shared_ptr<ServableModel>>()>;
  // `find`: the servable model, or why there is none (the stream ends with it);
  // asked again while it is UNAVAILABLE (a relay not planned yet), for up to
  // kPlanWait. `peer`: who asks, for logs and metrics.
  PeerServeReactor(Find find, const v1::PeerServeRequest& request, std::string peer, const PeerServing& serving);
  static constexpr std::chrono::seconds kPlanWait{30};

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  void Run();
  absl::Status Serve();
  absl::Status ServeItem(ServableModel& model, uint32_t item);
  // Writes `message_` and waits until gRPC has taken it; CANCELLED if the call ended.
  absl::Status Send();
  void Unref();

  Find find_;
  const v1::PeerServeRequest request_;
  const std::string peer_;
  const PeerServing serving_;

  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool writing_ = false;
  bool write_failed_ = false;
  int refs_ = 2;  // gRPC (until OnDone) and the thread
  v1::PeerMessage message_;
};

}  // namespace weightd
