#include "services/peer/peer_load.h"

#include <chrono>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "services/peer/peer_description.h"
#include "services/peer/peer_items.h"
#include "services/peer/peer_stream_reader.h"
#include "weightd/v1/loader.grpc.pb.h"

namespace weightd {
namespace {

// How long a peer load waits for a peer's connection before its first call: a
// connection refused or reset once (a peer restarting, a busy host) is retried.
constexpr absl::Duration kConnectPatience = absl::Seconds(3);

absl::Status FromGrpc(const grpc::Status& status, const std::string& address) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat("peer ", address, ": ", status.error_message()));
}

// The calls in flight, so a failed load can cut them at once.
class Calls {
 public:
  void Add(grpc::ClientContext* c) {
    std::lock_guard<std::mutex> lock(mu_);
    calls_.insert(c);
    if (cancelled_) c->TryCancel();
  }
  void Remove(grpc::ClientContext* c) {
    std::lock_guard<std::mutex> lock(mu_);
    calls_.erase(c);
  }
  void CancelAll() {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    for (grpc::ClientContext* c : calls_) c->TryCancel();
  }

 private:
  std::mutex mu_;
  std::set<grpc::ClientContext*> calls_;
  bool cancelled_ = false;
};

struct Pull {
  std::shared_ptr<LoadJob> job;
  const PeerLoadOptions* options = nullptr;
  v1::PeerModel description;
  std::shared_ptr<const LoadLayout> layout;
  std::shared_ptr<TensorPlacer> placer;
  std::vector<PeerItemRef> items;
  std::shared_ptr<ServableModel> relay;
  Calls calls;
  // Bytes of each item already counted in the load's progress (a stream that
  // resumes on another peer sends a tensor again; it is counted once).
  std::vector<uint64_t> counted;
};

// The description from `address`: read, validated, and compatible with this load.
absl::StatusOr<std::pair<v1::PeerModel, PeerCheckpoint>> Describe(const PeerLoadOptions& options,
                                                                   const v1::LoadModelRequest& spec,
                                                                   const std::string& address, Calls& calls) {
  WEIGHTD_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel, options.channels->Open(address, kConnectPatience));
  auto stub = v1::Loader::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  calls.Add(&context);
  v1::PeerServeRequest request;
  request.set_model_id(options.peer_model_id);
  request.set_description_only(true);
  auto reader = stub->ServePeer(&context, request);
  v1::PeerMessage message;
  const bool got = reader->Read(&message);
  v1::PeerMessage more;
  while (got && reader->Read(&more)) {
  }
  grpc::Status finished = reader->Finish();
  calls.Remove(&context);
  WEIGHTD_RETURN_IF_ERROR(FromGrpc(finished, address));
  if (!got || !message.has_model()) {
    return absl::DataLossError(absl::StrCat("peer ", address, " sent no description of model '",
                                            options.peer_model_id, "'"));
  }
  WEIGHTD_ASSIGN_OR_RETURN(PeerCheckpoint checkpoint, ReadDescription(message.model(), options.limits, address));
  WEIGHTD_RETURN_IF_ERROR(CheckPeerCompatible(message.model(), spec, address));
  if (options.expected_shards != nullptr &&
      message.model().source_digest() != SourceDigest(*options.expected_shards, options.expected_config_json)) {
    return absl::FailedPreconditionError(absl::StrCat("peer ", address, " holds model '", options.peer_model_id,
                                                      "' from other checkpoint files than this daemon's"));
  }
  return std::make_pair(message.model(), std::move(checkpoint));
}

// Hands the headers to the job; OK once it has planned and allocated.
absl::Status Plan(LoadJob& job, const PeerCheckpoint& checkpoint) {
  std::vector<std::string> files;
  for (const ShardInput& s : checkpoint.shards) files.push_back(s.file);
  job.ExpectShards(files, checkpoint.config_json);
  std::vector<std::promise<absl::Status>> resumed(checkpoint.shards.size());
  for (size_t s = 0; s < checkpoint.shards.size(); ++s) {
    job.OnShardHeader(checkpoint.shards[s].file, checkpoint.shards[s].header,
                      [&resumed, s](absl::Status status) { resumed[s].set_value(std::move(status)); });
  }
  for (auto& r : resumed) WEIGHTD_RETURN_IF_ERROR(r.get_future().get());
  return absl::OkStatus();
}

// One stream from `address` for items [*next, end); *next moves past each tensor as it lands.
absl::Status Stream(Pull& pull, const std::string& address, bool verify, uint32_t* next, uint32_t end) {
  const PeerLoadOptions& options = *pull.options;
  WEIGHTD_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel, options.channels->Open(address, kConnectPatience));
  auto stub = v1::Loader::NewStub(channel);
  grpc::ClientContext context;
  pull.calls.Add(&context);
  struct Remove {
    Calls& calls;
    grpc::ClientContext* c;
    ~Remove() { calls.Remove(c); }
  } remove{pull.calls, &context};
  v1::PeerServeRequest request;
  request.set_model_id(options.peer_model_id);
  request.set_first_item(*next);
  request.set_end_item(end);
  request.set_skip_description(!verify);
  auto reader = stub->ServePeer(&context, request);
  PeerStreamReader check(address, *next, end, verify);
  std::vector<PeerStreamReader::Item> items;
  for (const PeerItemRef& i : pull.items) items.push_back({i.name, i.size});
  check.SetItems(std::move(items));

  std::vector<uint32_t> landed_items, landed_crcs;  // of the tensor being received
  std::string scales;
  v1::PeerMessage message;
  absl::Status status;
  while (status.ok() && reader->Read(&message)) {
    if (pull.job->failed()) {
      status = pull.job->status();
      break;
    }
    absl::StatusOr<PeerStreamReader::Event> event = check.Next(message);
    if (!event.ok()) {
      status = event.status();
      break;
    }
    if (event->description) {
      const v1::PeerModel& other = message.model();
      if (other.source_digest() != pull.description.source_digest()) {
        status = absl::FailedPreconditionError(
            absl::StrCat("peer ", address, " holds model '", options.peer_model_id, "' from other checkpoint files"));
      } else {
        status = CheckPeerCompatible(other, pull.job->spec(), address);
        if (status.ok()) status = CheckSameItems(other, pull.items, address);
      }
      continue;
    }
    const PeerItemRef& item = pull.items[event->item];
    const TensorTask& task = pull.layout->plan.tasks[item.shard][item.tensor];
    const safetensors::TensorHeader& header = pull.layout->shards[item.shard].header.tensors[item.tensor];
    if (item.kind == PeerItemKind::kScales) {
      scales.append(event->data);
    } else {
      status = pull.placer->WriteRange(task, header, event->offset, event->data);
      const uint64_t end = event->offset + event->data.size();
      if (status.ok()) pull.relay->MarkPlaced(event->item, end);
      // Progress in source bytes as they arrive (a large tensor at a capped rate
      // must not look stalled): a code stands for one source element.
      if (status.ok() && end > pull.counted[event->item]) {
        const uint64_t factor = item.kind == PeerItemKind::kCodes ? kernels::DTypeSize(header.dtype) : 1;
        pull.job->progress().add_bytes((end - pull.counted[event->item]) * factor);
        pull.counted[event->item] = end;
        if (options.progress) options.progress();
      }
    }
    if (options.received) options.received(address, event->data.size());
    if (!status.ok() || !event->complete) continue;
    landed_items.push_back(event->item);
    landed_crcs.push_back(event->crc32c);
    if (item.kind == PeerItemKind::kCodes) continue;  // its scales follow
    if (item.kind == PeerItemKind::kScales) {
      std::vector<float> values(scales.size() / sizeof(float));
      std::memcpy(values.data(), scales.data(), values.size() * sizeof(float));
      scales.clear();
      status = pull.placer->WriteScales(task, item.whole, values);
      if (!status.ok()) continue;
    }
    status = pull.placer->Complete(task);
    if (!status.ok()) continue;
    pull.relay->MarkLanded(landed_items, landed_crcs);
    landed_items.clear();
    landed_crcs.clear();
    pull.job->progress().add_tensor();
    if (options.progress) options.progress();
    *next = event->item + 1;
  }
  if (!status.ok()) context.TryCancel();
  const grpc::Status finished = reader->Finish();
  WEIGHTD_RETURN_IF_ERROR(status);
  WEIGHTD_RETURN_IF_ERROR(FromGrpc(finished, address));
  return check.Finish();
}

// Items [first, end) from the peers, starting with `first_address`, moving on
// to the next one named when a stream fails.
absl::Status PullRange(Pull& pull, size_t first_address, uint32_t first, uint32_t end) {
  const std::vector<std::string>& addresses = pull.options->addresses;
  uint32_t next = first;
  absl::Status failure;
  for (size_t a = first_address; a < addresses.size(); ++a) {
    absl::Status status = Stream(pull, addresses[a], a != first_address, &next, end);
    if (status.ok()) return status;
    if (pull.job->failed()) return pull.job->status();
    failure = status;
    LogEvent(LogLevel::kWarning, "peer_stream_failed",
             {{"model", pull.job->model_id()}, {"peer", addresses[a]}, {"next_item", next},
              {"end_item", end}, {"error", std::string(status.message())},
              {"fallback", a + 1 < addresses.size() ? addresses[a + 1] : "none"}});
  }
  return failure;
}

// Stream ranges: runs of whole tensors of about equal bytes.
std::vector<std::pair<uint32_t, uint32_t>> Ranges(const std::vector<PeerItemRef>& items, uint32_t streams) {
  const std::vector<uint32_t> starts = TensorBoundaries(items);
  uint64_t total = 0;
  for (const PeerItemRef& i : items) total += i.size;
  std::vector<std::pair<uint32_t, uint32_t>> ranges;
  uint64_t done = 0;
  uint32_t begin = 0;
  for (size_t k = 0; k + 1 < starts.size(); ++k) {
    for (uint32_t i = starts[k]; i < starts[k + 1]; ++i) done += items[i].size;
    const uint64_t goal = total / std::max<uint32_t>(streams, 1) * (ranges.size() + 1);
    if (done >= goal && ranges.size() + 1 < streams) {
      ranges.emplace_back(begin, starts[k + 1]);
      begin = starts[k + 1];
    }
  }
  if (begin < items.size() || ranges.empty()) ranges.emplace_back(begin, static_cast<uint32_t>(items.size()));
  return ranges;
}

}  // namespace

std::string RunPeerLoad(std::shared_ptr<LoadJob> job, const PeerLoadOptions& options) {
  Pull pull;
  pull.job = job;
  pull.options = &options;
  const auto start = std::chrono::steady_clock::now();

  // The description, from the first peer that answers.
  absl::Status failure = absl::UnavailableError("no peer address");
  size_t described = options.addresses.size();
  PeerCheckpoint checkpoint;
  for (size_t a = 0; a < options.addresses.size() && described == options.addresses.size(); ++a) {
    auto answer = Describe(options, job->spec(), options.addresses[a], pull.calls);
    if (answer.ok()) {
      pull.description = std::move(answer->first);
      checkpoint = std::move(answer->second);
      described = a;
    } else {
      failure = answer.status();
      if (absl::IsFailedPrecondition(failure) || absl::IsDataLoss(failure)) break;  // no other peer would do
    }
  }
  if (described == options.addresses.size()) {
    job->Fail(failure);
    return "";
  }
  const std::string& from = options.addresses[described];

  absl::Status status = Plan(*job, checkpoint);
  if (status.ok()) {
    pull.layout = job->layout();
    pull.placer = job->placer();
    if (pull.layout == nullptr || pull.placer == nullptr) status = job->status();
  }
  if (status.ok()) {
    auto items = PeerItemsOf(pull.layout->shards, job->spec().quantization());
    status = items.status();
    if (items.ok()) pull.items = std::move(*items);
  }
  pull.counted.assign(pull.items.size(), 0);
  if (status.ok()) status = CheckSameItems(pull.description, pull.items, from);
  if (status.ok()) status = CheckItemsMatchPlan(pull.items, pull.layout->plan);
  if (status.ok() && !pull.layout->plan.fused_scales.empty()) {
    status = absl::FailedPreconditionError(absl::StrCat(
        "layout vllm fuses '", pull.layout->plan.fused_scales[0].name,
        "' under one per-tensor scale, but peer ", from, " holds each part with its own scale; load layout vllm "
        "per-tensor from the files, or use scheme block or per-channel"));
  }
  if (!status.ok()) {
    job->Fail(status);
    return from;
  }
  pull.relay = ServableModel::Create(job->model_id(), job->spec(), pull.layout, job->arenas(), job->backend(),
                                     /*landed=*/false);
  if (options.relay) options.relay(pull.relay);

  const auto ranges = Ranges(pull.items, options.streams);
  std::vector<std::future<absl::Status>> streams;
  for (const auto& [first, end] : ranges) {
    streams.push_back(std::async(std::launch::async, [&pull, described, first = first, end = end] {
      absl::Status s = PullRange(pull, described, first, end);
      if (!s.ok()) {
        pull.job->Fail(s);  // the other streams stop at their next message
        pull.calls.CancelAll();
      }
      return s;
    }));
  }
  // A load failed from outside (unload, watchdog) cuts the calls at once.
  for (auto& s : streams) {
    while (s.wait_for(std::chrono::milliseconds(100)) != std::future_status::ready) {
      if (job->failed()) pull.calls.CancelAll();
    }
  }
  for (auto& s : streams) {
    absl::Status one = s.get();
    if (status.ok() && !one.ok()) status = one;
  }
  pull.placer.reset();
  if (status.ok() && job->failed()) status = job->status();
  if (!status.ok()) {
    job->Fail(status);
    pull.relay->Cancel(job->status());
  } else {
    for (const ShardInput& s : pull.layout->shards) job->OnShardDone(s.file, absl::OkStatus());
  }
  LogEvent(status.ok() ? LogLevel::kInfo : LogLevel::kWarning, "peer_load",
           {{"model", job->model_id()}, {"peer", from}, {"streams", ranges.size()},
            {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()},
            {"result", status.ok() ? "ok" : std::string(absl::StatusCodeToString(status.code()))}});
  return from;
}

}  // namespace weightd
