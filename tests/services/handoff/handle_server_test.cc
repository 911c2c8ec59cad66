#include "services/handoff/handle_server.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <thread>

#include "base/fd_passing.h"
#include "client/cpp/lease.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/open_fds.h"

namespace weightd::handoff {
namespace {

// Grants model "m" as two memfd allocations with known contents.
class FakeHandler : public AttachHandler {
 public:
  FakeHandler() {
    for (const std::string& content : {std::string("weights of allocation zero"), std::string(8192, '\x7e')}) {
      UniqueFd fd(::memfd_create("fake_allocation", MFD_CLOEXEC));
      EXPECT_EQ(::write(fd.get(), content.data(), content.size()), static_cast<ssize_t>(content.size()));
      contents_.push_back(content);
      memfds_.push_back(std::move(fd));
    }
  }
  AttachGrant Attach(const PeerCredentials& peer, const v1::AttachRequest& request) override {
    AttachGrant grant;
    last_pid = peer.pid;
    if (request.model_id() != "m") {
      grant.response.set_code(static_cast<int>(absl::StatusCode::kNotFound));
      grant.response.set_message("model " + request.model_id() + " is not loaded");
      return grant;
    }
    grant.response.set_lease_id(++next_lease_);
    v1::RankManifest* manifest = grant.response.mutable_manifest();
    manifest->set_rank(request.rank());
    for (int t = 0; t < tensors; ++t) {  // a MoE rank's worth of entries, where a test asks
      v1::TensorEntry* e = manifest->add_tensors();
      e->set_name(absl::StrCat("model.layers.", t / 1000, ".mlp.experts.", t % 1000, ".down_proj.weight_scale_inv"));
      e->set_dtype("F32");
      e->add_shape(56);
      e->add_shape(16);
    }
    for (size_t i = 0; i < memfds_.size(); ++i) {
      v1::Allocation* allocation = manifest->add_allocations();
      allocation->set_id(i);
      allocation->set_size(contents_[i].size());
      allocation->set_handle_type(v1::HANDLE_TYPE_MEMFD);
      grant.fds.emplace_back(::dup(memfds_[i].get()));
    }
    grant.on_lease_end = [this] { ++ended; };
    return grant;
  }
  const std::string& content(size_t i) const { return contents_[i]; }

  std::atomic<int> ended{0};
  std::atomic<pid_t> last_pid{0};
  std::atomic<int> tensors{0};  // extra tensor entries in each manifest

 private:
  std::vector<UniqueFd> memfds_;
  std::vector<std::string> contents_;
  uint64_t next_lease_ = 0;
};

bool Eventually(const std::function<bool()>& condition) {
  for (int i = 0; i < 500; ++i) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return condition();
}

using ::weightd::testing::OpenFdCount;

UniqueFd ConnectRaw(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  path.copy(addr.sun_path, path.size());
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)), 0);
  return fd;
}

v1::AttachResponse RecvResponse(int fd, std::vector<UniqueFd>* fds) {
  std::string payload;
  v1::AttachResponse response;
  absl::Status status = RecvFrame(fd, absl::Seconds(5), &payload, fds);
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_TRUE(response.ParseFromString(payload));
  return response;
}

class HandleServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/handle_server_test.XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    options_.socket_path = dir_ + "/handles.sock";
  }
  void TearDown() override {
    server_.reset();
    ::rmdir(dir_.c_str());
  }
  void StartServer() {
    auto server = HandleServer::Start(options_, &handler_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }

  std::string dir_;
  HandleServerOptions options_;
  FakeHandler handler_;
  std::unique_ptr<HandleServer> server_;
};

TEST_F(HandleServerTest, LeaseReceivesMemoryAndEndsOnRelease) {
  StartServer();
  auto lease = client::Lease::Attach(options_.socket_path, "m", 3);
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_EQ(lease->lease_id(), 1u);
  EXPECT_EQ(lease->manifest().rank(), 3u);
  ASSERT_EQ(lease->fds().size(), 2u);
  EXPECT_EQ(handler_.last_pid.load(), ::getpid());
  for (size_t i = 0; i < 2; ++i) {
    size_t size = lease->manifest().allocations(i).size();
    void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, lease->fds()[i].get(), 0);
    ASSERT_NE(map, MAP_FAILED);
    EXPECT_EQ(std::string(static_cast<const char*>(map), size), handler_.content(i));
    ::munmap(map, size);
  }
  EXPECT_TRUE(Eventually([&] { return server_->active_leases() == 1; }));
  EXPECT_EQ(handler_.ended.load(), 0);
  lease->Release();
  EXPECT_TRUE(Eventually([&] { return handler_.ended.load() == 1; }));
  EXPECT_EQ(server_->active_leases(), 0u);
}

TEST_F(HandleServerTest, ShutdownEndsLiveLeasesAndUnlinksSocket) {
  StartServer();
  auto first = client::Lease::Attach(options_.socket_path, "m", 0);
  auto second = client::Lease::Attach(options_.socket_path, "m", 1);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_TRUE(Eventually([&] { return server_->active_leases() == 2; }));
  server_->Shutdown();
  EXPECT_EQ(handler_.ended.load(), 2);
  EXPECT_EQ(server_->active_leases(), 0u);
  struct stat st;
  EXPECT_NE(::stat(options_.socket_path.c_str(), &st), 0);
  server_->Shutdown();  // idempotent
  EXPECT_EQ(handler_.ended.load(), 2);
}

TEST_F(HandleServerTest, RefusalPropagatesAsStatus) {
  StartServer();
  auto lease = client::Lease::Attach(options_.socket_path, "unknown", 0);
  EXPECT_EQ(lease.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(lease.status().message(), "model unknown is not loaded");
}

TEST_F(HandleServerTest, DisallowedUidIsPermissionDenied) {
  uid_t other = ::geteuid() + 4242;
  options_.allowed_uids = {other};
  StartServer();
  auto lease = client::Lease::Attach(options_.socket_path, "m", 0);
  EXPECT_EQ(lease.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(lease.status().message(), "uid " + std::to_string(::geteuid()) + " is not allowed");
  EXPECT_EQ(handler_.last_pid.load(), 0);
}

TEST_F(HandleServerTest, ADisallowedUidIsAnsweredWithoutSendingAnything) {
  options_.allowed_uids = {::geteuid() + 4242};
  StartServer();
  UniqueFd conn = ConnectRaw(options_.socket_path);  // and no request at all
  std::vector<UniqueFd> fds;
  v1::AttachResponse response = RecvResponse(conn.get(), &fds);
  EXPECT_EQ(response.code(), static_cast<int>(absl::StatusCode::kPermissionDenied));
  EXPECT_TRUE(fds.empty());
}

TEST_F(HandleServerTest, AManifestOverTheFrameLimitIsAnsweredNotDropped) {
  handler_.tensors = 300000;  // about 21 MB of manifest
  StartServer();
  auto lease = client::Lease::Attach(options_.socket_path, "m", 0);
  EXPECT_EQ(lease.status().code(), absl::StatusCode::kResourceExhausted) << lease.status();
  EXPECT_NE(lease.status().message().find("frame limit"), std::string::npos) << lease.status();
  EXPECT_TRUE(Eventually([&] { return handler_.ended.load() == 1; }));  // the granted lease ended
  EXPECT_EQ(server_->active_leases(), 0u);
}

// Workers that ask for a large manifest and never read it. Before, the poll thread
// sat in each one's send for 5 to 10 s (SO_SNDTIMEO), and the attach behind them
// waited for all four: 20 s or more.
TEST_F(HandleServerTest, WorkersThatDoNotReadTheirAnswersDoNotDelayAnotherAttach) {
  handler_.tensors = 60000;  // about 4 MB of manifest, far over a socket's send buffer
  StartServer();
  std::vector<UniqueFd> stalled;
  v1::AttachRequest request;
  request.set_model_id("m");
  for (int i = 0; i < 4; ++i) {
    stalled.push_back(ConnectRaw(options_.socket_path));
    ASSERT_TRUE(SendFrame(stalled.back().get(), request.SerializeAsString()).ok());
  }
  ASSERT_TRUE(Eventually([&] { return handler_.last_pid.load() != 0; }));  // the first is being answered
  // Half the stall the four would cause before, and hundreds of times what an
  // attach takes: a busy machine does not reach it.
  auto lease = client::Lease::Attach(options_.socket_path, "m", 0, absl::Seconds(10));
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_EQ(lease->manifest().tensors_size(), 60000);
  EXPECT_EQ(lease->fds().size(), 2u);
}

TEST_F(HandleServerTest, AWorkerThatDoesNotReadItsAnswerIsDroppedAndItsLeaseEnds) {
  handler_.tensors = 60000;
  options_.answer_timeout = absl::Milliseconds(200);
  StartServer();
  const int open_fds = OpenFdCount();
  UniqueFd stalled = ConnectRaw(options_.socket_path);
  v1::AttachRequest request;
  request.set_model_id("m");
  ASSERT_TRUE(SendFrame(stalled.get(), request.SerializeAsString()).ok());
  EXPECT_TRUE(Eventually([&] { return handler_.ended.load() == 1; }));  // granted, never delivered
  EXPECT_EQ(server_->active_leases(), 0u);
  // What it finds when it reads at last: the start of its answer, then the close.
  std::string payload;
  std::vector<UniqueFd> fds;
  EXPECT_EQ(RecvFrame(stalled.get(), absl::Seconds(5), &payload, &fds).code(), absl::StatusCode::kDataLoss);
  stalled.reset();
  // The server closed its end and the grant's descriptors (each once: a second
  // close would hit a descriptor opened since, and the count would fall short).
  EXPECT_TRUE(Eventually([&] { return OpenFdCount() == open_fds; })) << OpenFdCount() << " vs " << open_fds;
  // The server still serves. A small answer: under a sanitizer a reading client can
  // take longer than the 200 ms this test allows for the large one.
  handler_.tensors = 1;
  EXPECT_TRUE(client::Lease::Attach(options_.socket_path, "m", 0).ok());
}

TEST_F(HandleServerTest, GarbageRequestIsInvalidArgument) {
  StartServer();
  UniqueFd conn = ConnectRaw(options_.socket_path);
  ASSERT_TRUE(SendFrame(conn.get(), std::string("\x0a\xff", 2)).ok());
  std::vector<UniqueFd> fds;
  v1::AttachResponse response = RecvResponse(conn.get(), &fds);
  EXPECT_EQ(response.code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(response.message(), "malformed AttachRequest");
  EXPECT_TRUE(fds.empty());
  std::string payload;
  EXPECT_EQ(RecvFrame(conn.get(), absl::Seconds(5), &payload, &fds).code(), absl::StatusCode::kUnavailable);
}

TEST_F(HandleServerTest, OversizedRequestIsInvalidArgument) {
  StartServer();
  UniqueFd conn = ConnectRaw(options_.socket_path);
  ASSERT_EQ(::write(conn.get(), "\x00\x00\x10\x00", 4), 4);  // 1 MiB follows
  std::vector<UniqueFd> fds;
  v1::AttachResponse response = RecvResponse(conn.get(), &fds);
  EXPECT_EQ(response.code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_NE(response.message().find("1048576"), std::string::npos) << response.message();
}

TEST_F(HandleServerTest, SecondRequestOnLeasedConnectionEndsLease) {
  StartServer();
  UniqueFd conn = ConnectRaw(options_.socket_path);
  v1::AttachRequest request;
  request.set_model_id("m");
  ASSERT_TRUE(SendFrame(conn.get(), request.SerializeAsString()).ok());
  std::vector<UniqueFd> fds;
  EXPECT_EQ(RecvResponse(conn.get(), &fds).code(), 0);
  EXPECT_EQ(fds.size(), 2u);
  ASSERT_TRUE(SendFrame(conn.get(), request.SerializeAsString()).ok());
  EXPECT_EQ(RecvResponse(conn.get(), &fds).code(), static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_TRUE(Eventually([&] { return handler_.ended.load() == 1; }));
  EXPECT_EQ(server_->active_leases(), 0u);
}

TEST_F(HandleServerTest, SilentConnectionIsClosed) {
  options_.request_timeout = absl::Milliseconds(100);
  StartServer();
  UniqueFd conn = ConnectRaw(options_.socket_path);
  std::string payload;
  std::vector<UniqueFd> fds;
  EXPECT_EQ(RecvFrame(conn.get(), absl::Seconds(5), &payload, &fds).code(), absl::StatusCode::kUnavailable);
}

TEST_F(HandleServerTest, SocketModeAndStaleSocket) {
  StartServer();
  struct stat st;
  ASSERT_EQ(::stat(options_.socket_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  // A crashed daemon leaves its socket file behind: a new server replaces it.
  UniqueFd stale(::socket(AF_UNIX, SOCK_STREAM, 0));
  server_.reset();
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  options_.socket_path.copy(addr.sun_path, options_.socket_path.size());
  ASSERT_EQ(::bind(stale.get(), reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)), 0);
  stale.reset();
  options_.mode = 0600;
  StartServer();
  ASSERT_EQ(::stat(options_.socket_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_TRUE(client::Lease::Attach(options_.socket_path, "m", 0).ok());
}

TEST_F(HandleServerTest, BadPathsAreRejected) {
  options_.socket_path = "/tmp/" + std::string(200, 'x');
  EXPECT_EQ(HandleServer::Start(options_, &handler_).status().code(), absl::StatusCode::kInvalidArgument);
  options_.socket_path = dir_;  // a directory, not a socket
  EXPECT_EQ(HandleServer::Start(options_, &handler_).status().code(), absl::StatusCode::kFailedPrecondition);
  options_.socket_path = dir_ + "/handles.sock";
  StartServer();  // a live server's socket is not taken over
  EXPECT_EQ(HandleServer::Start(options_, &handler_).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(client::Lease::Attach(options_.socket_path, "m", 0).ok());
}

}  // namespace
}  // namespace weightd::handoff
