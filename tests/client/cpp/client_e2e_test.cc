// The C++ client library against the real daemon on host devices: load with
// progress, the manifest, attach and read every tensor in place (bytes equal to
// the CPU reference), the lease's lifetime (the Mapping, and the process), and
// the daemon's status codes carried back.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <thread>

#include "client/cpp/client.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "services/safetensors/header.h"
#include "tests/e2e/daemon_process.h"

namespace weightd::testing {
namespace {

using client::Client;
using client::Mapping;
using client::PathSpec;
using client::PeerSpec;
using client::TensorView;

struct ReferenceTensor {
  safetensors::TensorHeader header;
  std::string bytes;
};

// Every tensor of every .safetensors file in `dir`, by name.
std::map<std::string, ReferenceTensor> ReadCheckpoint(const std::string& dir) {
  std::map<std::string, ReferenceTensor> tensors;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".safetensors") continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::string file(std::istreambuf_iterator<char>(in), {});
    uint64_t header_size = 0;
    std::memcpy(&header_size, file.data(), 8);
    auto header = safetensors::ParseShardHeaderJson(entry.path().string(), std::string_view(file).substr(8, header_size),
                                                    safetensors::ParseLimits());
    EXPECT_TRUE(header.ok()) << header.status();
    if (!header.ok()) continue;
    for (const safetensors::TensorHeader& t : header->tensors) {
      tensors[t.name] = {t, file.substr(header->data_start() + t.begin, t.size())};
    }
  }
  return tensors;
}

int Leases(Client& daemon, const std::string& model) {
  auto models = daemon.List();
  EXPECT_TRUE(models.ok()) << models.status();
  if (!models.ok()) return -1;
  for (const v1::ModelInfo& info : *models) {
    if (info.model_id() == model) return static_cast<int>(info.leases());
  }
  return -1;
}

// The daemon notices a closed connection asynchronously: poll, bounded.
bool LeasesReach(Client& daemon, const std::string& model, int expected) {
  for (int i = 0; i < 200; ++i) {
    if (Leases(daemon, model) == expected) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return false;
}

class ClientE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    CommandResult gen = daemon_.GenerateTiny("tiny", {"--shards=2", "--dtype=mixed"});
    ASSERT_EQ(gen.exit_code, 0) << gen.err;
    daemon_.Start();
    client_ = std::make_unique<Client>(
        client::ClientOptions{.address = daemon_.grpc_address(), .handle_socket = daemon_.handle_socket()});
  }

  void LoadTiny() {
    auto manifest = client_->Load(PathSpec("tiny", "tiny"));
    ASSERT_TRUE(manifest.ok()) << manifest.status();
  }

  DaemonProcess daemon_;
  std::unique_ptr<Client> client_;
};

TEST_F(ClientE2ETest, ASecondDaemonLoadsFromTheFirstThroughPeerSpec) {
  LoadTiny();
  DaemonProcess other;
  other.Start();
  Client receiver(client::ClientOptions{.address = other.grpc_address(), .handle_socket = other.handle_socket()});
  std::vector<v1::LoadEvent> events;
  auto manifest =
      receiver.Load(PeerSpec("tiny", daemon_.grpc_address()), [&](const v1::LoadEvent& e) { events.push_back(e); });
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  for (size_t i = 1; i < events.size(); ++i) EXPECT_LE(events[i - 1].bytes_done(), events[i].bytes_done());
  auto local = client_->Manifest("tiny");
  ASSERT_TRUE(local.ok()) << local.status();
  EXPECT_EQ(manifest->source_bytes(), local->source_bytes());
  EXPECT_EQ(manifest->resident_bytes(), local->resident_bytes());
  auto a = client_->Attach("tiny");
  auto b = receiver.Attach("tiny");
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(a->tensors().size(), b->tensors().size());
  for (const TensorView& view : a->tensors()) {
    auto other = b->Tensor(view.name);
    ASSERT_TRUE(other.ok()) << other.status();
    ASSERT_EQ(view.size_bytes, other->size_bytes) << view.name;
    EXPECT_EQ(std::memcmp(view.data, other->data, view.size_bytes), 0) << view.name;
  }
  // Another scheme than the peer's is refused, naming both sides.
  v1::LoadModelRequest other_scheme = PeerSpec("b", daemon_.grpc_address(), v1::SCHEME_BLOCK);
  other_scheme.mutable_source()->mutable_peer()->set_model_id("tiny");  // the peer's id for it
  auto block = receiver.Load(other_scheme);
  EXPECT_EQ(block.status().code(), absl::StatusCode::kFailedPrecondition) << block.status();
}

TEST_F(ClientE2ETest, LoadStreamsProgressAndEndsWithTheManifest) {
  std::vector<v1::LoadEvent> events;
  auto manifest = client_->Load(PathSpec("tiny", "tiny"), [&](const v1::LoadEvent& e) { events.push_back(e); });
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  ASSERT_FALSE(events.empty());
  for (size_t i = 1; i < events.size(); ++i) {
    EXPECT_LE(events[i - 1].phase(), events[i].phase()) << "phases went backwards at event " << i;
    EXPECT_LE(events[i - 1].bytes_done(), events[i].bytes_done());
  }
  const v1::LoadEvent& last = events.back();
  EXPECT_EQ(last.phase(), v1::PHASE_READY);
  EXPECT_TRUE(last.has_manifest());
  EXPECT_GT(last.bytes_total(), 0u);
  EXPECT_EQ(last.bytes_done(), last.bytes_total());
  EXPECT_EQ(last.tensors_done(), last.tensors_total());
  EXPECT_EQ(manifest->state(), v1::MODEL_STATE_READY);
  ASSERT_EQ(manifest->ranks_size(), 1);
  EXPECT_EQ(manifest->ranks(0).device_kind(), v1::DEVICE_KIND_HOST);

  auto again = client_->Manifest("tiny");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*again, *manifest));
  // The same spec again finds the resident model.
  EXPECT_TRUE(client_->Load(PathSpec("tiny", "tiny")).ok());
}

TEST_F(ClientE2ETest, AttachedTensorsEqualTheCpuReferenceByteForByte) {
  LoadTiny();
  // The reference: weightctl quantize (the CPU kernels), itself checked by verify
  // against the plain reference kernels.
  const std::string source = daemon_.model_root() + "/tiny", reference = daemon_.dir() + "/reference";
  CommandResult quantize = daemon_.Ctl({"quantize", source, reference});
  ASSERT_EQ(quantize.exit_code, 0) << quantize.err;
  CommandResult verify = daemon_.Ctl({"verify", source, reference});
  ASSERT_EQ(verify.exit_code, 0) << verify.out << verify.err;
  const std::map<std::string, ReferenceTensor> expected = ReadCheckpoint(reference);

  auto mapping = client_->Attach("tiny", 0);
  ASSERT_TRUE(mapping.ok()) << mapping.status();
  ASSERT_EQ(mapping->tensors().size(), expected.size());
  int fp8 = 0;
  for (const TensorView& view : mapping->tensors()) {
    SCOPED_TRACE(view.name);
    auto ref = expected.find(view.name);
    ASSERT_NE(ref, expected.end()) << "not in the reference";
    EXPECT_EQ(view.dtype, kernels::DTypeName(ref->second.header.dtype));
    EXPECT_EQ(view.shape, ref->second.header.shape);
    EXPECT_EQ(view.device_kind, v1::DEVICE_KIND_HOST);
    ASSERT_EQ(view.size_bytes, ref->second.bytes.size());
    EXPECT_EQ(std::memcmp(view.data, ref->second.bytes.data(), view.size_bytes), 0) << "bytes differ";
    fp8 += view.dtype == "F8_E4M3";
  }
  EXPECT_GT(fp8, 0);
  // Views point into the mapped allocation: no copy.
  const v1::TensorEntry& entry = mapping->manifest().tensors(0);
  auto view = mapping->Tensor(entry.name());
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->data, static_cast<char*>(mapping->allocation_base(entry.allocation())) + entry.offset());
  EXPECT_EQ(mapping->Tensor("no.such.tensor").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ClientE2ETest, LeaseLastsAsLongAsTheMapping) {
  LoadTiny();
  {
    auto attached = client_->Attach("tiny", 0);
    ASSERT_TRUE(attached.ok()) << attached.status();
    Mapping moved = std::move(*attached);  // the lease moves with it
    EXPECT_TRUE(moved.held());
    EXPECT_TRUE(LeasesReach(*client_, "tiny", 1));
    auto refused = client_->Unload("tiny");
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
  }
  EXPECT_EQ(Leases(*client_, "tiny"), 0) << "the lease outlived its Mapping";
  auto freed = client_->Unload("tiny");
  ASSERT_TRUE(freed.ok()) << freed.status();
  EXPECT_GT(*freed, 0u);
}

TEST_F(ClientE2ETest, LeaseEndsWhenTheHoldingProcessDies) {
  LoadTiny();
  int attached[2], release[2];
  ASSERT_EQ(pipe(attached), 0);
  ASSERT_EQ(pipe(release), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(attached[0]);
    close(release[1]);
    // Only the handle socket is used here, never gRPC; the mapping is never released.
    auto mapping = client_->Attach("tiny", 0);
    char ok = mapping.ok() ? 'A' : 'E';
    (void)!write(attached[1], &ok, 1);
    char byte;
    (void)!read(release[0], &byte, 1);
    _exit(0);
  }
  close(attached[1]);
  close(release[0]);
  char ok = 0;
  ASSERT_EQ(read(attached[0], &ok, 1), 1);
  EXPECT_EQ(ok, 'A') << "the child could not attach";
  EXPECT_TRUE(LeasesReach(*client_, "tiny", 1));
  close(release[1]);  // the child exits without unmapping or closing anything
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  close(attached[0]);
  EXPECT_TRUE(LeasesReach(*client_, "tiny", 0)) << "the dead process still holds a lease";
  EXPECT_TRUE(client_->Unload("tiny").ok());
}

TEST_F(ClientE2ETest, ErrorsCarryTheDaemonsCodeAndMessage) {
  auto manifest = client_->Manifest("absent");
  EXPECT_EQ(manifest.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(manifest.status().message().find("absent"), std::string::npos) << manifest.status();
  EXPECT_EQ(client_->Attach("absent", 0).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->Unload("absent").status().code(), absl::StatusCode::kNotFound);
  auto missing = client_->Load(PathSpec("m", "no-such-dir"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound) << missing.status();
  EXPECT_NE(missing.status().message().find("no-such-dir"), std::string::npos) << missing.status();

  LoadTiny();
  auto other = client_->Load(PathSpec("tiny", "tiny", v1::SCHEME_BLOCK));
  EXPECT_EQ(other.status().code(), absl::StatusCode::kAlreadyExists) << other.status();
  EXPECT_EQ(client_->Attach("tiny", 5).status().code(), absl::StatusCode::kInvalidArgument);

  Client nowhere({.address = "unix:" + daemon_.dir() + "/none.sock", .handle_socket = daemon_.dir() + "/none.sock"});
  EXPECT_EQ(nowhere.List().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(nowhere.Attach("tiny", 0).status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace weightd::testing
