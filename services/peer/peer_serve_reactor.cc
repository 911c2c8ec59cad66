#include "services/peer/peer_serve_reactor.h"

#include <thread>

#include "absl/strings/str_cat.h"
#include "base/crc32c.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "services/server/grpc_status.h"
#include "services/server/reactor_order.h"

namespace weightd {

PeerServeReactor::PeerServeReactor(Find find, const v1::PeerServeRequest& request, std::string peer,
                                   const PeerServing& serving)
    : find_(std::move(find)), request_(request), peer_(std::move(peer)), serving_(serving) {
  std::thread([this] { Run(); }).detach();
}

void PeerServeReactor::OnWriteDone(bool ok) {
  reactor_order::Reaction reaction(this);
  {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    if (!ok) write_failed_ = true;
  }
  cv_.notify_all();
}

void PeerServeReactor::OnCancel() {
  reactor_order::Reaction reaction(this);
  stop_ = true;
  cv_.notify_all();
}

void PeerServeReactor::OnDone() {
  reactor_order::Acquire(this);
  Unref();
}

void PeerServeReactor::Unref() {
  bool last;
  {
    std::lock_guard<std::mutex> lock(mu_);
    last = --refs_ == 0;
  }
  if (last) delete this;
}

absl::Status PeerServeReactor::Send() {
  std::unique_lock<std::mutex> lock(mu_);
  if (write_failed_ || stop_.load()) return absl::CancelledError("the peer ended the stream");
  writing_ = true;
  lock.unlock();
  reactor_order::Release(this);
  StartWrite(&message_);
  // gRPC calls OnWriteDone for every write, with false once the call has ended.
  lock.lock();
  cv_.wait(lock, [this] { return !writing_; });
  if (write_failed_) return absl::CancelledError("the peer ended the stream");
  return absl::OkStatus();
}

void PeerServeReactor::Run() {
  const auto start = std::chrono::steady_clock::now();
  absl::Status status = Serve();
  LogEvent(status.ok() ? LogLevel::kInfo : LogLevel::kWarning, "peer_served",
           {{"model", request_.model_id()}, {"peer", peer_}, {"first_item", request_.first_item()},
            {"end_item", request_.end_item()}, {"result", status.ok() ? "ok" : std::string(absl::StatusCodeToString(status.code()))},
            {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()},
            {"error", std::string(status.message())}});
  reactor_order::Release(this);
  Finish(ToGrpcStatus(status));
  Unref();
}

absl::Status PeerServeReactor::Serve() {
  absl::StatusOr<std::shared_ptr<ServableModel>> found = find_();
  for (auto give_up = std::chrono::steady_clock::now() + kPlanWait;
       absl::IsUnavailable(found.status()) && std::chrono::steady_clock::now() < give_up && !stop_.load();) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    found = find_();
  }
  WEIGHTD_RETURN_IF_ERROR(found.status());
  ServableModel& model = **found;
  if (!serving_.limiter->StartStream()) {
    return absl::ResourceExhaustedError(absl::StrCat("this daemon already serves ", serving_.limiter->max_streams(),
                                                     " peer streams; try another peer or later"));
  }
  model.StreamStarted();
  if (serving_.on_stream) serving_.on_stream(1);
  struct End {
    PeerServeReactor* r;
    ServableModel& m;
    ~End() {
      m.StreamEnded();
      r->serving_.limiter->EndStream();
      if (r->serving_.on_stream) r->serving_.on_stream(-1);
    }
  } ended{this, model};

  WEIGHTD_ASSIGN_OR_RETURN(const v1::PeerModel* description, model.Describe());
  if (!request_.skip_description()) {
    *message_.mutable_model() = *description;
    WEIGHTD_RETURN_IF_ERROR(Send());
  }
  if (request_.description_only()) return absl::OkStatus();
  const uint32_t items = static_cast<uint32_t>(model.items().size());
  const uint32_t end = request_.end_item() == 0 ? items : request_.end_item();
  if (request_.first_item() > end || end > items) {
    return absl::OutOfRangeError(absl::StrCat("items [", request_.first_item(), ", ", end, ") of model '",
                                              request_.model_id(), "', which has ", items));
  }
  for (uint32_t item = request_.first_item(); item < end; ++item) {
    WEIGHTD_RETURN_IF_ERROR(ServeItem(model, item));
  }
  return absl::OkStatus();
}

absl::Status PeerServeReactor::ServeItem(ServableModel& model, uint32_t item) {
  const PeerItemRef& ref = model.items()[item];
  uint32_t crc = 0;
  uint64_t offset = 0;
  do {
    const uint64_t n = std::min<uint64_t>(serving_.message_bytes, ref.size - offset);
    // A relay sends bytes as they are placed here; the last message waits for the item to land whole.
    WEIGHTD_RETURN_IF_ERROR(model.AwaitPlaced(item, offset + n, stop_));
    if (!serving_.limiter->Acquire(n, stop_)) return absl::CancelledError("the peer ended the stream");
    std::string& bytes = *message_.mutable_data()->mutable_data();
    bytes.resize(n);
    WEIGHTD_RETURN_IF_ERROR(model.Read(item, offset, n, bytes.data()));
    crc = Crc32c(crc, bytes);
    const bool last = offset + n == ref.size;
    if (last) {
      const std::optional<uint32_t> arrived = model.ArrivedCrc(item);
      if (arrived && *arrived != crc) {
        return absl::DataLossError(absl::StrCat("tensor '", ref.name, "' of model '", request_.model_id(),
                                                "' reads back with CRC-32C ", crc, " here, but arrived with ",
                                                *arrived));
      }
    }
    if (offset == 0 && n > 0 && ref.name == serving_.corrupt_tensor) bytes[0] ^= 0x01;
    v1::PeerData* data = message_.mutable_data();
    data->set_item(item);
    data->set_offset(offset);
    data->set_last(last);
    data->set_crc32c(last ? crc : 0);
    WEIGHTD_RETURN_IF_ERROR(Send());
    if (serving_.on_served) serving_.on_served(peer_, n);
    offset += n;
  } while (offset < ref.size);
  return absl::OkStatus();
}

}  // namespace weightd
