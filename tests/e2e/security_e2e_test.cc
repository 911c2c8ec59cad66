// Who may talk to the daemon and what it reads: socket modes, the allowed-uid
// list on both Unix sockets, TCP only with TLS (tls_e2e_test.cc: mutual TLS with
// every client), path sources confined to the model root, and the limits on
// untrusted input.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "client/cpp/lease.h"
#include "gtest/gtest.h"
#include "tests/e2e/daemon_process.h"
#include "tests/e2e/push_stream.h"

namespace weightd::testing {
namespace {

namespace fs = std::filesystem;

void WriteModel(const std::string& dir, const std::string& shard) {
  fs::create_directories(dir);
  std::ofstream(dir + "/model.safetensors", std::ios::binary) << shard;
}

CommandResult ExpectRefused(const DaemonProcess& daemon, std::vector<std::string> args, const std::string& code,
                            const std::string& part) {
  CommandResult r = daemon.Ctl(std::move(args));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find(code + ":"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(part), std::string::npos) << r.err;
  return r;
}

TEST(SecurityE2ETest, BothUnixSocketsAreCreatedWithMode0660) {
  DaemonProcess daemon;
  daemon.Start();
  for (const std::string& path : {daemon.grpc_address().substr(5), daemon.handle_socket()}) {
    struct stat st;
    ASSERT_EQ(::stat(path.c_str(), &st), 0) << path;
    EXPECT_TRUE(S_ISSOCK(st.st_mode)) << path;
    EXPECT_EQ(st.st_mode & 0777, 0660u) << path;
  }
}

TEST(SecurityE2ETest, AUidOutsideTheAllowedListIsTurnedAwayOnBothSockets) {
  DaemonProcess daemon;
  WriteModel(daemon.model_root() + "/m", OneTensorShard("a.weight", 16));
  // Allowed: only a uid that is not ours (the tests run as one uid, often root).
  daemon.Start({"--allowed-uids=" + std::to_string(::geteuid() + 4242)});
  CommandResult list = daemon.Ctl({"list"});
  EXPECT_EQ(list.exit_code, 1) << list.err;
  EXPECT_NE(list.err.find("UNAVAILABLE"), std::string::npos) << list.err;
  auto lease = client::Lease::Attach(daemon.handle_socket(), "m", 0);
  EXPECT_EQ(lease.status().code(), absl::StatusCode::kPermissionDenied) << lease.status();
  EXPECT_NE(lease.status().message().find("uid " + std::to_string(::geteuid())), std::string::npos);
  daemon.Stop();
  EXPECT_NE(daemon.log().find("connection_refused"), std::string::npos) << daemon.log();
}

TEST(SecurityE2ETest, OurUidInTheAllowedListIsServed) {
  DaemonProcess daemon;
  daemon.Start({"--allowed-uids=" + std::to_string(::geteuid())});
  EXPECT_EQ(daemon.Ctl({"list"}).exit_code, 0);
}

TEST(SecurityE2ETest, PlainTcpIsRefusedAtStartUnlessAskedFor) {
  DaemonProcess daemon;
  CommandResult r = RunCommand({BinPath("weightd"), "--listen=127.0.0.1:0", "--handle-socket=" + daemon.handle_socket(),
                                "--metrics-address=", "--backend=host"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("needs --tls-cert and --tls-key (or --insecure-tcp)"), std::string::npos) << r.err;
  CommandResult half = RunCommand({BinPath("weightd"), "--listen=127.0.0.1:0", "--tls-cert=/nonexistent",
                                   "--handle-socket=" + daemon.handle_socket(), "--metrics-address=",
                                   "--backend=host"});
  EXPECT_EQ(half.exit_code, 2);
  EXPECT_NE(half.err.find("--tls-cert and --tls-key go together"), std::string::npos) << half.err;
}

class PathConfinementE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    outside_ = daemon_.dir() + "/outside";
    WriteModel(outside_, OneTensorShard("a.weight", 16));
    daemon_.Start();
  }
  DaemonProcess daemon_;
  std::string outside_;
};

TEST_F(PathConfinementE2ETest, DotDotIsInvalidArgumentWhetherOrNotTheTargetExists) {
  ExpectRefused(daemon_, {"load", "m", "--path=../outside"}, "INVALID_ARGUMENT", "'..'");
  ExpectRefused(daemon_, {"load", "m", "--path=../no-such-dir"}, "INVALID_ARGUMENT", "'..'");
  ExpectRefused(daemon_, {"load", "m", "--path=" + outside_}, "INVALID_ARGUMENT", "outside the model root");
}

TEST_F(PathConfinementE2ETest, SymlinksLeavingTheRootArePermissionDenied) {
  fs::create_directory_symlink(outside_, daemon_.model_root() + "/linked-dir");
  fs::create_directories(daemon_.model_root() + "/linked-file");
  fs::create_symlink(outside_ + "/model.safetensors", daemon_.model_root() + "/linked-file/model.safetensors");
  ExpectRefused(daemon_, {"load", "m", "--path=linked-dir"}, "PERMISSION_DENIED", "outside the model root");
  ExpectRefused(daemon_, {"load", "m", "--path=linked-file"}, "PERMISSION_DENIED", "outside the model root");
  EXPECT_EQ(daemon_.UsedBytes(), 0);
}

TEST(LimitsE2ETest, EachInputLimitRefusesWithItsOwnStatusAndMessage) {
  DaemonProcess daemon;
  const std::string root = daemon.model_root();
  const std::string small_header = R"({"a.weight":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  WriteModel(root + "/padded", Shard(small_header + std::string(2048, ' '), std::string(4, '\0')));
  WriteModel(root + "/two", Shard(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                  R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                  std::string(8, '\0')));
  WriteModel(root + "/long-name", OneTensorShard("model.layers.0.self_attn.q_proj.weight", 4));
  WriteModel(root + "/big", OneTensorShard("a.weight", 1024));
  daemon.Start({"--max-header-bytes=1KiB", "--max-tensors=1", "--max-tensor-name-bytes=16", "--max-model-bytes=1KiB"});
  ExpectRefused(daemon, {"load", "h", "--path=padded"}, "INVALID_ARGUMENT", "exceeds the limit of 1024");
  ExpectRefused(daemon, {"load", "t", "--path=two"}, "INVALID_ARGUMENT", "more than 1 tensors");
  ExpectRefused(daemon, {"load", "n", "--path=long-name"}, "INVALID_ARGUMENT", "limit of 16");
  ExpectRefused(daemon, {"load", "b", "--path=big"}, "RESOURCE_EXHAUSTED", "--max-model-bytes");
  ExpectRefused(daemon, {"load", "b2", "--push=" + root + "/big"}, "RESOURCE_EXHAUSTED", "--max-model-bytes");
  EXPECT_EQ(daemon.UsedBytes(), 0);
}

TEST(LimitsE2ETest, ConcurrentLoadsBeyondTheLimitAreResourceExhausted) {
  DaemonProcess daemon;
  WriteModel(daemon.model_root() + "/m", OneTensorShard("a.weight", 16));
  daemon.Start({"--max-concurrent-loads=1"});
  PushLoad first(daemon, "first", {"model.safetensors"});
  ExpectRefused(daemon, {"load", "second", "--path=m"}, "RESOURCE_EXHAUSTED", "--max-concurrent-loads");
  // Attaching to the load in progress is not a new load.
  EXPECT_TRUE(PushWhole(first, "model.safetensors", OneTensorShard("a.weight", 16)).ok());
  EXPECT_TRUE(first.Finish().ok());
  EXPECT_EQ(daemon.Ctl({"load", "second", "--path=m"}).exit_code, 0);
}

}  // namespace
}  // namespace weightd::testing
