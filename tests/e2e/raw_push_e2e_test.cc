// The raw push connection on the daemon's Unix socket (base/raw_push_wire.h)
// against the real daemon: a pushed checkpoint equals the path load and the gRPC
// push byte for byte; broken frames get their precise status naming the shard and
// the byte, fail the load, and leave nothing behind; a daemon run without it is
// pushed over gRPC.
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>

#include "base/raw_push_wire.h"
#include "base/unique_fd.h"
#include "client/cpp/chunk_wire.h"
#include "client/cpp/raw_shard_stream.h"
#include "gtest/gtest.h"
#include "tests/e2e/checkpoint_files.h"
#include "tests/e2e/daemon_process.h"
#include "tests/e2e/push_stream.h"

namespace weightd::testing {
namespace {

std::string Frame(const std::string& payload) {
  std::string frame;
  AppendLength(static_cast<uint32_t>(payload.size()), frame);
  return frame + payload;
}

std::string DataChunk(const std::string& bytes) { return client::DataFieldPrefix(bytes.size()) + bytes; }

// A 4-float shard, model.safetensors of model "m".
std::string OneShard() {
  return Shard(R"({"a.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})", std::string(16, '\x01'));
}

// The first frame of a raw push of `file`: `open`, the header and 10 data bytes.
std::string OpenFrame(const std::string& file) {
  v1::ShardChunk first;
  first.mutable_open()->set_model_id("m");
  first.mutable_open()->set_shard_file("model.safetensors");
  first.mutable_open()->set_size(file.size());
  first.set_data(file.substr(0, 10));
  return Frame(first.SerializeAsString());
}

// A raw push connection written by hand, to break the protocol on purpose.
class HandConnection {
 public:
  // Connected and greeted (`greet`: the magic sent whole, and the daemon's read back).
  explicit HandConnection(const DaemonProcess& daemon, bool greet = true) {
    const std::string path = daemon.dir() + "/weightd.sock";
    struct sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    path.copy(addr.sun_path, path.size());
    fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    EXPECT_EQ(::connect(fd_.get(), reinterpret_cast<const struct sockaddr*>(&addr), sizeof(addr)), 0);
    // A daemon that never answers fails the test rather than hanging it.
    const struct timeval timeout = {60, 0};
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    if (!greet) return;
    Send(std::string(kRawPushMagic));
    EXPECT_EQ(Greeting(), kRawPushMagic);
  }
  // The daemon's first 8 bytes, or fewer when it closes first.
  std::string Greeting() {
    char greeting[8] = {};
    const ssize_t n = ::recv(fd_.get(), greeting, sizeof(greeting), MSG_WAITALL);
    return std::string(greeting, n < 0 ? 0 : static_cast<size_t>(n));
  }
  void Send(const std::string& bytes) { ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL); }
  void CloseWrites() { ::shutdown(fd_.get(), SHUT_WR); }
  // The daemon's answer.
  RawPushReply Reply() {
    unsigned char length[4];
    if (::recv(fd_.get(), length, 4, MSG_WAITALL) != 4) return {-1, "no answer", ""};
    std::string body(ReadLength(length), '\0');
    EXPECT_EQ(::recv(fd_.get(), body.data(), body.size(), MSG_WAITALL), static_cast<ssize_t>(body.size()));
    absl::StatusOr<RawPushReply> reply = DecodeRawPushReply(body);
    EXPECT_TRUE(reply.ok()) << reply.status();
    return reply.ok() ? *reply : RawPushReply{-1, "malformed", ""};
  }

 private:
  UniqueFd fd_;
};

class RawPushE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    checkpoint_ = daemon_.model_root() + "/tiny";
    CommandResult gen = daemon_.GenerateTiny("tiny", {"--shards=3", "--dtype=mixed"});
    ASSERT_EQ(gen.exit_code, 0) << gen.err;
  }

  void ExpectOk(const CommandResult& result) { EXPECT_EQ(result.exit_code, 0) << result.out << result.err; }

  void ExpectServingAndEmpty() {
    EXPECT_EQ(daemon_.Ctl({"list"}).exit_code, 0);
    EXPECT_EQ(daemon_.Metric("weightd_device_memory_used_bytes{device=\"0\"}"), 0);
  }

  // The daemon's open sockets (/proc/<pid>/fd), and what every descriptor points at.
  // Sockets, not every descriptor: a sanitizer's symbolizer adds pipes of its own.
  int OpenSockets(std::string* listing = nullptr) const {
    int sockets = 0;
    const std::string dir = "/proc/" + std::to_string(daemon_.pid()) + "/fd";
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      std::error_code error;
      const std::string target = std::filesystem::read_symlink(entry.path(), error).string();
      if (target.rfind("socket:", 0) == 0) ++sockets;
      if (listing != nullptr) *listing += entry.path().filename().string() + " -> " + target + "\n";
    }
    return sockets;
  }

  // The daemon's sockets back at `before` (connections close on the daemon's own
  // threads: waited for, bounded).
  void ExpectSocketsBackTo(int before) {
    int now = -1;
    for (int i = 0; i < 300 && (now = OpenSockets()) > before; ++i) ::usleep(100000);
    std::string listing;
    OpenSockets(&listing);
    EXPECT_LE(now, before) << listing;
  }

  // Pushes every shard of the tiny checkpoint with `open` into a load, one stream
  // and thread each (the load is planned once every shard's header is in).
  template <typename OpenFn>
  void PushAll(const std::string& model, OpenFn open) {
    const std::vector<std::string> names = {"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                                            "model-00003-of-00003.safetensors"};
    PushLoad load(daemon_, model, names);
    std::vector<std::thread> threads;
    for (const std::string& name : names) {
      threads.emplace_back([&, name] {
        const std::string bytes = ReadFile(checkpoint_ + "/" + name);
        ASSERT_FALSE(bytes.empty()) << name;
        absl::StatusOr<std::unique_ptr<client::ShardStream>> stream = open(model, name, bytes.size());
        ASSERT_TRUE(stream.ok()) << stream.status();
        size_t at = 0;
        // 1000-byte messages: many frames per shard, tensors spanning several.
        while ((*stream)->Send(1000, [&](uint8_t* buffer, size_t capacity) {
          const size_t n = std::min(capacity, bytes.size() - at);
          std::memcpy(buffer, bytes.data() + at, n);
          at += n;
          return n;
        })) {
        }
        absl::StatusOr<v1::PushSummary> summary = (*stream)->Finish();
        ASSERT_TRUE(summary.ok()) << name << ": " << summary.status();
        EXPECT_EQ(summary->bytes_received(), bytes.size()) << name;
      });
    }
    for (std::thread& t : threads) t.join();
    EXPECT_TRUE(load.Finish().ok());
  }

  DaemonProcess daemon_;
  std::string checkpoint_;
};

TEST_F(RawPushE2ETest, ARawPushEqualsThePathLoadAndTheGrpcPush) {
  daemon_.Start();
  ExpectOk(daemon_.Ctl({"load", "by-path", "--path=tiny"}));
  const std::string address = daemon_.grpc_address();
  PushAll("by-raw", [&](const std::string& model, const std::string& name, uint64_t size)
                        -> absl::StatusOr<std::unique_ptr<client::ShardStream>> {
    // Raw, not a fallback: Open fails unless the daemon accepted the connection.
    absl::StatusOr<std::unique_ptr<client::RawShardStream>> raw = client::RawShardStream::Open(address, model, name, size);
    if (!raw.ok()) return raw.status();
    return std::unique_ptr<client::ShardStream>(std::move(*raw));
  });
  PushAll("by-grpc", [&](const std::string& model, const std::string& name, uint64_t size) {
    return client::OpenShardStream(address, {}, model, name, size, client::PushTransport::kGrpc);
  });
  const std::string path = daemon_.dir() + "/export-path";
  ExpectOk(daemon_.Ctl({"export", "by-path", path}));
  const std::string path_bytes = ReadFile(path + "/model.safetensors");
  ASSERT_FALSE(path_bytes.empty());
  for (const char* model : {"by-raw", "by-grpc"}) {
    const std::string out = daemon_.dir() + "/export-" + model;
    ExpectOk(daemon_.Ctl({"export", model, out}));
    EXPECT_TRUE(path_bytes == ReadFile(out + "/model.safetensors")) << model << " and the path load differ";
  }
  CommandResult verify = daemon_.Ctl({"verify", checkpoint_, daemon_.dir() + "/export-by-raw"});
  ExpectOk(verify);
  EXPECT_NE(verify.out.find("quantized equal to the CPU reference"), std::string::npos) << verify.out;
}

struct BrokenCase {
  const char* name;
  // What follows a valid `open` frame (with the header and 10 data bytes).
  std::string after_open;
  bool close_writes;  // the client half-closes after sending
  const char* code;
  std::vector<const char*> message_parts;
};

TEST_F(RawPushE2ETest, BrokenFramesGetTheirStatusNamingTheShardAndTheByte) {
  daemon_.Start();
  const std::string file = OneShard();
  const std::string open_frame = OpenFrame(file);
  const std::string over_limit("\xf0\xff\xff\x0f", 4);  // 0x0ffffff0 bytes: past 64 MiB
  const std::vector<BrokenCase> cases = {
      {"not_a_shard_chunk", Frame(std::string("\x12\x10short", 7)), false, "INVALID_ARGUMENT",
       {"shard 'model.safetensors'", "not a valid ShardChunk"}},
      {"frame_over_the_limit", over_limit, false, "RESOURCE_EXHAUSTED",
       {"shard 'model.safetensors'", "over the limit", "shard byte 10"}},
      {"cut_inside_a_frame", std::string("\xe8\x03\x00\x00", 4) + "0123456789", true, "DATA_LOSS",
       {"shard 'model.safetensors'", "inside the frame", "10 of its 1000 bytes"}},
      {"no_end_frame", Frame(DataChunk(file.substr(10))), true, "DATA_LOSS",
       {"shard 'model.safetensors'", "without the end frame"}},
  };
  ASSERT_EQ(daemon_.Ctl({"list"}).exit_code, 0);  // the daemon's lazily opened descriptors exist
  const int sockets_before = OpenSockets();
  for (const BrokenCase& c : cases) {
    SCOPED_TRACE(c.name);
    PushLoad load(daemon_, "m", {"model.safetensors"});
    HandConnection connection(daemon_);
    connection.Send(open_frame + c.after_open);
    if (c.close_writes) connection.CloseWrites();
    const RawPushReply reply = connection.Reply();
    EXPECT_EQ(absl::StatusCodeToString(static_cast<absl::StatusCode>(reply.code)), c.code) << reply.message;
    for (const char* part : c.message_parts) EXPECT_NE(reply.message.find(part), std::string::npos) << reply.message;
    const grpc::Status loaded = load.Finish();
    EXPECT_EQ(loaded.error_code(), static_cast<grpc::StatusCode>(reply.code)) << loaded.error_message();
    ExpectServingAndEmpty();
  }
  ExpectSocketsBackTo(sockets_before);
  // The same shard whole, on a fresh connection: the daemon still loads it.
  PushLoad load(daemon_, "m", {"model.safetensors"});
  HandConnection connection(daemon_);
  connection.Send(open_frame + Frame(DataChunk(file.substr(10))) + std::string(4, '\0'));
  const RawPushReply reply = connection.Reply();
  EXPECT_EQ(reply.code, 0) << reply.message;
  v1::PushSummary summary;
  ASSERT_TRUE(summary.ParseFromString(reply.summary));
  EXPECT_EQ(summary.bytes_received(), file.size());
  EXPECT_TRUE(load.Finish().ok());
}

TEST_F(RawPushE2ETest, ADaemonWithoutRawPushesIsPushedOverGrpc) {
  daemon_.Start({"--raw-unix-push=false"});
  absl::StatusOr<std::unique_ptr<client::RawShardStream>> raw =
      client::RawShardStream::Open(daemon_.grpc_address(), "m", "model.safetensors", 100);
  EXPECT_EQ(raw.status().code(), absl::StatusCode::kUnimplemented) << raw.status();
  // weightctl's push falls back to gRPC and loads.
  ExpectOk(daemon_.Ctl({"load", "by-push", "--push=" + checkpoint_}));
  ExpectOk(daemon_.Ctl({"load", "by-path", "--path=tiny"}));
  const std::string a = daemon_.dir() + "/a", b = daemon_.dir() + "/b";
  ExpectOk(daemon_.Ctl({"export", "by-push", a}));
  ExpectOk(daemon_.Ctl({"export", "by-path", b}));
  EXPECT_TRUE(ReadFile(a + "/model.safetensors") == ReadFile(b + "/model.safetensors"));
}

// A shutdown ends raw connections the way it ends gRPC streams: the client gets
// an answer, and the daemon exits without waiting for the client.
TEST_F(RawPushE2ETest, AShutdownEndsAConnectionInTheMiddleOfAShard) {
  daemon_.Start();
  PushLoad load(daemon_, "m", {"model.safetensors"});
  HandConnection connection(daemon_);
  connection.Send(OpenFrame(OneShard()));
  std::optional<int> exit = daemon_.StopWithin(std::chrono::seconds(20));
  ASSERT_TRUE(exit.has_value()) << "the daemon did not exit";
  EXPECT_EQ(*exit, 0);
  const RawPushReply reply = connection.Reply();
  EXPECT_NE(reply.code, 0) << reply.message;
  EXPECT_NE(reply.code, -1) << "no answer before the daemon exited";
}

// The listener reads a magic as it comes: one sent in pieces is greeted; one that
// turns out wrong is closed, and the daemon goes on serving.
TEST_F(RawPushE2ETest, AMagicSentInPiecesIsGreetedAndAWrongOneIsClosed) {
  daemon_.Start();
  HandConnection pieces(daemon_, /*greet=*/false);
  pieces.Send(std::string(kRawPushMagic.substr(0, 3)));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  pieces.Send(std::string(kRawPushMagic.substr(3)));
  EXPECT_EQ(pieces.Greeting(), kRawPushMagic);
  HandConnection wrong(daemon_, /*greet=*/false);
  wrong.Send("WDPxxxxx");
  EXPECT_EQ(wrong.Greeting(), "");
  EXPECT_EQ(daemon_.Ctl({"list"}).exit_code, 0);
  daemon_.Stop();
  EXPECT_NE(daemon_.log().find("neither gRPC nor a raw push"), std::string::npos);
}

TEST_F(RawPushE2ETest, AConnectionFromAUidNotAllowedIsClosedBeforeTheGreeting) {
  daemon_.Start({"--allowed-uids=" + std::to_string(::geteuid() + 4242)});
  absl::StatusOr<std::unique_ptr<client::RawShardStream>> raw =
      client::RawShardStream::Open(daemon_.grpc_address(), "m", "model.safetensors", 100);
  EXPECT_FALSE(raw.ok());
  daemon_.Stop();
  EXPECT_NE(daemon_.log().find("connection_refused"), std::string::npos);
}

// A connection that is greeted and then sends no whole frame holds no thread
// forever: once --push-idle-timeout-seconds have passed it is answered
// DEADLINE_EXCEEDED and closed, whether it sent nothing or part of a frame. A
// push whose frames come in time is not cut.
TEST_F(RawPushE2ETest, AConnectionWithNoWholeFirstFrameIsAnsweredAfterTheIdleTimeout) {
  // 2 s, not 1: the push in time below must not be cut on a busy machine.
  daemon_.Start({"--push-idle-timeout-seconds=2"});
  ASSERT_EQ(daemon_.Ctl({"list"}).exit_code, 0);  // the daemon's lazily opened descriptors exist
  const int sockets_before = OpenSockets();
  const std::string open_frame = OpenFrame(OneShard());
  for (const std::string& sent : {std::string(), open_frame.substr(0, 7)}) {
    SCOPED_TRACE(sent.size());
    HandConnection connection(daemon_);
    connection.Send(sent);
    const RawPushReply reply = connection.Reply();
    EXPECT_EQ(reply.code, static_cast<int>(absl::StatusCode::kDeadlineExceeded)) << reply.message;
    EXPECT_NE(reply.message.find("at byte " + std::to_string(sent.size())), std::string::npos) << reply.message;
    EXPECT_NE(reply.message.find("before the first frame was whole (--push-idle-timeout-seconds)"), std::string::npos)
        << reply.message;
  }
  ExpectSocketsBackTo(sockets_before);
  PushAll("in-time", [&](const std::string& model, const std::string& name, uint64_t size)
                         -> absl::StatusOr<std::unique_ptr<client::ShardStream>> {
    absl::StatusOr<std::unique_ptr<client::RawShardStream>> raw =
        client::RawShardStream::Open(daemon_.grpc_address(), model, name, size);
    if (!raw.ok()) return raw.status();
    return std::unique_ptr<client::ShardStream>(std::move(*raw));
  });
  const std::string out = daemon_.dir() + "/export-in-time";
  ExpectOk(daemon_.Ctl({"export", "in-time", out}));
  ExpectOk(daemon_.Ctl({"verify", checkpoint_, out}));
}

// Past --max-raw-push-connections a connection is closed before its greeting and
// its client pushes over gRPC; once one ends, raw connections are greeted again.
TEST_F(RawPushE2ETest, PastTheConnectionLimitClientsPushOverGrpc) {
  daemon_.Start({"--max-raw-push-connections=1"});
  auto held = std::make_unique<HandConnection>(daemon_);  // the one allowed
  HandConnection refused(daemon_, /*greet=*/false);
  refused.Send(std::string(kRawPushMagic));
  EXPECT_EQ(refused.Greeting(), "");
  ExpectOk(daemon_.Ctl({"load", "by-push", "--push=" + checkpoint_}));  // each shard falls back to gRPC
  ExpectOk(daemon_.Ctl({"load", "by-path", "--path=tiny"}));
  const std::string a = daemon_.dir() + "/a", b = daemon_.dir() + "/b";
  ExpectOk(daemon_.Ctl({"export", "by-push", a}));
  ExpectOk(daemon_.Ctl({"export", "by-path", b}));
  EXPECT_TRUE(ReadFile(a + "/model.safetensors") == ReadFile(b + "/model.safetensors"));
  held.reset();  // its stream ends (no open) and its connection goes
  absl::Status opened = absl::UnknownError("not tried");
  for (int i = 0; i < 300 && !opened.ok(); ++i) {
    if (i > 0) ::usleep(100000);
    absl::StatusOr<std::unique_ptr<client::RawShardStream>> raw =
        client::RawShardStream::Open(daemon_.grpc_address(), "m", "model.safetensors", 100);
    opened = raw.status();
    if (raw.ok()) (*raw)->Cancel();
  }
  EXPECT_TRUE(opened.ok()) << opened;
  daemon_.Stop();
  EXPECT_NE(daemon_.log().find("raw_push_connections_full"), std::string::npos);
}

// weightctl --push-transport=grpc pushes over gRPC even where the daemon takes raw
// pushes: with the one raw connection allowed held, no further raw connection
// arrives (the daemon would log raw_push_connections_full, as in the test above).
// A bad value is refused before any load starts.
TEST_F(RawPushE2ETest, WeightctlPushTransportGrpcOpensNoRawConnection) {
  daemon_.Start({"--max-raw-push-connections=1"});
  HandConnection held(daemon_);
  CommandResult bad = daemon_.Ctl({"load", "by-push", "--push=" + checkpoint_, "--push-transport=raw"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("INVALID_ARGUMENT: --push-transport=raw: use auto or grpc"), std::string::npos) << bad.err;
  EXPECT_EQ(daemon_.Ctl({"list"}).out.find("by-push"), std::string::npos);  // no load waits for shards
  ExpectOk(daemon_.Ctl({"load", "by-push", "--push=" + checkpoint_, "--push-transport=grpc"}));
  ExpectOk(daemon_.Ctl({"load", "by-path", "--path=tiny"}));
  const std::string a = daemon_.dir() + "/a", b = daemon_.dir() + "/b";
  ExpectOk(daemon_.Ctl({"export", "by-push", a}));
  ExpectOk(daemon_.Ctl({"export", "by-path", b}));
  EXPECT_TRUE(ReadFile(a + "/model.safetensors") == ReadFile(b + "/model.safetensors"));
  daemon_.Stop();
  EXPECT_EQ(daemon_.log().find("raw_push_connections_full"), std::string::npos) << daemon_.log();
}

}  // namespace
}  // namespace weightd::testing
