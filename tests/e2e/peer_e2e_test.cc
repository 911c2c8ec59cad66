// Daemons feeding one another (docs/cluster.md), as a fleet would run them: each
// real weightd listens on TCP loopback with mutual TLS and reaches its peers
// with its own certificate. What a node receives from a peer is compared byte for
// byte with what a local load of the same checkpoint gives (weightctl export of
// every rank), under every scheme and across tensor-parallel splits; a chain
// relays; a peer killed mid-stream fails the load cleanly or hands over to the
// next peer named; refusals carry their codes; a corrupted byte is DATA_LOSS.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/e2e/daemon_process.h"
#include "tests/services/load/tp_checkpoint.h"

namespace weightd::testing {
namespace {

namespace fs = std::filesystem;

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Every file of an export, by relative path.
std::map<std::string, std::string> Files(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) out[fs::relative(e.path(), dir).string()] = ReadAll(e.path());
  }
  return out;
}

// One self-signed certificate (localhost, 127.0.0.1) that every daemon shows and trusts.
class Certificates {
 public:
  Certificates() : dir_(fs::temp_directory_path() / absl::StrCat("weightd-peer-tls-", ::getpid())) {
    fs::create_directories(dir_);
    CommandResult gen = RunCommand({"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                                    "1", "-subj", "/CN=localhost", "-addext",
                                    "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key(), "-out", cert()});
    ok_ = gen.exit_code == 0;
    error_ = gen.err;
  }
  ~Certificates() { fs::remove_all(dir_); }
  std::string cert() const { return (dir_ / "cert.pem").string(); }
  std::string key() const { return (dir_ / "key.pem").string(); }
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }

 private:
  fs::path dir_;
  bool ok_ = false;
  std::string error_;
};

class PeerE2ETest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(certs_.ok()) << certs_.error(); }

  // Daemon `i`, listening on its Unix socket and on a free TCP port of 127.0.0.1 with mutual TLS.
  DaemonProcess& Start(size_t i, std::vector<std::string> flags = {}) {
    while (daemons_.size() <= i) daemons_.push_back(std::make_unique<DaemonProcess>());
    DaemonProcess& d = *daemons_[i];
    std::vector<std::string> all = {
        "--listen=" + d.grpc_address() + ",127.0.0.1:0", "--tls-cert=" + certs_.cert(),
        "--tls-key=" + certs_.key(), "--tls-client-ca=" + certs_.cert(), "--peer-tls-ca=" + certs_.cert(),
        "--peer-tls-cert=" + certs_.cert(), "--peer-tls-key=" + certs_.key(), "--peer-tls-server-name=localhost",
        "--host-devices=4"};
    all.insert(all.end(), flags.begin(), flags.end());
    d.Start(all);
    EXPECT_NE(d.tcp_port(), 0) << d.log();
    return d;
  }
  std::string Address(size_t i) { return absl::StrCat("127.0.0.1:", D(i).tcp_port()); }
  DaemonProcess& D(size_t i) { return *daemons_[i]; }

  static void ExpectOk(const CommandResult& r) { EXPECT_EQ(r.exit_code, 0) << r.out << r.err; }
  static void ExpectRefused(const CommandResult& r, const std::string& code, const std::string& text) {
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find(code), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(text), std::string::npos) << r.err;
  }

  // Every rank of `model` on daemon `a` equals, byte for byte, `other` on daemon `b`.
  void ExpectSameRanks(size_t a, const std::string& model, size_t b, const std::string& other, int tp) {
    for (int r = 0; r < tp; ++r) {
      const std::string da = absl::StrCat(D(a).dir(), "/x-", model, "-", r, "-", ++exports_);
      const std::string db = absl::StrCat(D(b).dir(), "/x-", other, "-", r, "-", ++exports_);
      ExpectOk(D(a).Ctl({"export", model, da, absl::StrCat("--rank=", r)}));
      ExpectOk(D(b).Ctl({"export", other, db, absl::StrCat("--rank=", r)}));
      auto fa = Files(da), fb = Files(db);
      EXPECT_FALSE(fa.empty());
      EXPECT_EQ(fa.size(), fb.size());
      for (const auto& [name, bytes] : fa) {
        ASSERT_TRUE(fb.count(name)) << name;
        EXPECT_TRUE(bytes == fb[name]) << model << " rank " << r << ": " << name << " differs";
      }
    }
  }

  double ReceivedFrom(size_t receiver, size_t peer) {
    return D(receiver).Metric(
        absl::StrCat("weightd_peer_bytes_total{direction=\"received\",peer=\"", Address(peer), "\"}"));
  }

  Certificates certs_;
  std::vector<std::unique_ptr<DaemonProcess>> daemons_;
  int exports_ = 0;
};

TEST_F(PeerE2ETest, APeerLoadEqualsTheLocalLoadByteForByteUnderEveryScheme) {
  ASSERT_EQ(Start(0).GenerateTiny("tiny", {}).exit_code, 0);
  Start(1);
  for (const std::string scheme : {"per-tensor", "per-channel", "block"}) {
    SCOPED_TRACE(scheme);
    ExpectOk(D(0).Ctl({"load", scheme, "--path=tiny", "--scheme=" + scheme}));
    ExpectOk(D(1).Ctl({"load", scheme, "--peer=" + Address(0), "--scheme=" + scheme}));
    ExpectSameRanks(0, scheme, 1, scheme, 1);
  }
  // The bytes came over the wire, from that peer, and the daemon served them.
  EXPECT_GT(ReceivedFrom(1, 0), 0);
  EXPECT_GT(D(0).Metric("weightd_peer_bytes_total{direction=\"served\",peer=\"127.0.0.1\"}"), 0);
  EXPECT_EQ(D(0).Metric("weightd_peer_serving_streams"), 0);
  EXPECT_EQ(D(1).Metric("weightd_peer_load_duration_seconds_count"), 3);
  // The check can fail: two schemes differ.
  ExpectOk(D(1).Ctl({"load", "other", "--peer=" + Address(0), "--peer-model=per-channel", "--scheme=per-channel"}));
  const std::string x = D(1).dir() + "/pt", y = D(1).dir() + "/pc";
  ExpectOk(D(1).Ctl({"export", "per-tensor", x}));
  ExpectOk(D(1).Ctl({"export", "other", y}));
  EXPECT_NE(Files(x), Files(y));
}

TEST_F(PeerE2ETest, ASplitIsRecutForTheReceiversTpSize) {
  Start(0);
  ASSERT_TRUE(WriteTpCheckpoint(MakeTpCheckpoint(), D(0).model_root() + "/tp").ok());
  Start(1);
  // tp 1 served to tp 4 (per-tensor) and tp 2 (block), tp 2 served to tp 1 (per-channel, row splits reduced).
  ExpectOk(D(0).Ctl({"load", "pt", "--path=tp"}));
  ExpectOk(D(0).Ctl({"load", "pt4", "--path=tp", "--tp=4"}));
  ExpectOk(D(1).Ctl({"load", "pt4", "--peer=" + Address(0), "--peer-model=pt", "--tp=4"}));
  ExpectSameRanks(0, "pt4", 1, "pt4", 4);

  ExpectOk(D(0).Ctl({"load", "bl", "--path=tp", "--scheme=block"}));
  ExpectOk(D(0).Ctl({"load", "bl2", "--path=tp", "--scheme=block", "--tp=2"}));
  ExpectOk(D(1).Ctl({"load", "bl2", "--peer=" + Address(0), "--peer-model=bl", "--scheme=block", "--tp=2"}));
  ExpectSameRanks(0, "bl2", 1, "bl2", 2);

  ExpectOk(D(0).Ctl({"load", "pc2", "--path=tp", "--scheme=per-channel", "--tp=2"}));
  ExpectOk(D(0).Ctl({"load", "pc", "--path=tp", "--scheme=per-channel"}));
  ExpectOk(D(1).Ctl({"load", "pc", "--peer=" + Address(0), "--peer-model=pc2", "--scheme=per-channel"}));
  ExpectSameRanks(0, "pc", 1, "pc", 1);
}

TEST_F(PeerE2ETest, TensorsLargerThanAMessageArriveWholeUnderEverySplit) {
  // The small preset's MLP weights are megabytes: many messages each, cut by rows.
  ASSERT_EQ(Start(0).GenerateTiny("small", {"--preset=small"}).exit_code, 0);
  Start(1);
  ExpectOk(D(0).Ctl({"load", "m", "--path=small"}));
  ExpectOk(D(0).Ctl({"load", "m2", "--path=small", "--tp=2"}));
  ExpectOk(D(1).Ctl({"load", "m", "--peer=" + Address(0)}));
  ExpectOk(D(1).Ctl({"load", "m2", "--peer=" + Address(0), "--peer-model=m", "--tp=2"}));
  ExpectSameRanks(0, "m", 1, "m", 1);
  ExpectSameRanks(0, "m2", 1, "m2", 2);
}

TEST_F(PeerE2ETest, AChainOfFourRelaysWhatHasLanded) {
  ASSERT_EQ(Start(0, {"--peer-serve-bandwidth=8MiB"}).GenerateTiny("tiny", {}).exit_code, 0);
  Start(1, {"--peer-serve-bandwidth=8MiB"});
  Start(2, {"--peer-serve-bandwidth=8MiB"});
  Start(3);
  ExpectOk(D(0).Ctl({"load", "m", "--path=tiny"}));
  // All three pulls at once: 2 and 3 ask peers that are themselves still receiving.
  // Each starts once its peer has taken its own load (a peer that has not heard
  // of the model yet answers NOT_FOUND).
  std::vector<std::thread> pulls;
  std::vector<CommandResult> results(4);
  for (size_t i = 1; i <= 3; ++i) {
    auto knows = [&](size_t d) { return D(d).Ctl({"list", "--json"}).out.find("\"model_id\": \"m\"") != std::string::npos; };
    for (int wait = 0; wait < 2000 && !knows(i - 1); ++wait) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    pulls.emplace_back([&, i] { results[i] = D(i).Ctl({"load", "m", "--peer=" + Address(i - 1)}); });
  }
  for (auto& t : pulls) t.join();
  for (size_t i = 1; i <= 3; ++i) ExpectOk(results[i]);
  ExpectSameRanks(0, "m", 3, "m", 1);
  for (size_t i = 1; i <= 3; ++i) EXPECT_GT(ReceivedFrom(i, i - 1), 0) << i;
  EXPECT_NE(D(1).log().find("\"event\":\"peer_served\""), std::string::npos);
}

TEST_F(PeerE2ETest, APeerKilledMidStreamFailsTheLoadCleanlyOrHandsOverToTheNextPeer) {
  ASSERT_EQ(Start(0, {"--peer-serve-bandwidth=1MiB"}).GenerateTiny("tiny", {}).exit_code, 0);
  ASSERT_EQ(Start(1).GenerateTiny("tiny", {}).exit_code, 0);
  ASSERT_EQ(Start(2, {"--peer-serve-bandwidth=1MiB"}).GenerateTiny("tiny", {}).exit_code, 0);
  Start(3);
  for (size_t i = 0; i <= 2; ++i) ExpectOk(D(i).Ctl({"load", "m", "--path=tiny"}));

  // Kills daemon `victim` once daemon 3 has received some of its bytes.
  auto kill_when_receiving = [&](size_t victim) {
    for (int i = 0; i < 3000 && ReceivedFrom(3, victim) <= 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ::kill(D(victim).pid(), SIGKILL);
  };
  std::thread killer([&] { kill_when_receiving(0); });
  CommandResult alone = D(3).Ctl({"load", "m", "--peer=" + Address(0)});
  killer.join();
  EXPECT_NE(alone.exit_code, 0) << alone.out;
  EXPECT_NE(alone.err.find("peer " + Address(0)), std::string::npos) << alone.err;
  EXPECT_EQ(D(3).UsedBytes(), 0);  // nothing half-resident

  // With a second peer named, the load goes on from it.
  std::thread killer2([&] { kill_when_receiving(2); });
  CommandResult handed = D(3).Ctl({"load", "m2", "--peer=" + Address(2) + "," + Address(1), "--peer-model=m"});
  killer2.join();
  ExpectOk(handed);
  EXPECT_GT(ReceivedFrom(3, 1), 0);
  ExpectSameRanks(1, "m", 3, "m2", 1);
  EXPECT_NE(D(3).log().find("\"event\":\"peer_stream_failed\""), std::string::npos);
}

TEST_F(PeerE2ETest, AnUnloadOnTheServingPeerEndsItsStreamsWithAClearStatusAndFreesTheMemory) {
  ASSERT_EQ(Start(0, {"--peer-serve-bandwidth=1MiB"}).GenerateTiny("tiny", {}).exit_code, 0);
  Start(1);
  ExpectOk(D(0).Ctl({"load", "m", "--path=tiny"}));
  std::thread unloader([&] {
    for (int i = 0; i < 3000 && ReceivedFrom(1, 0) <= 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ExpectOk(D(0).Ctl({"unload", "m"}));  // a serving stream is no lease: no --force needed
  });
  CommandResult pulled = D(1).Ctl({"load", "m", "--peer=" + Address(0)});
  unloader.join();
  ExpectRefused(pulled, "ABORTED", "model 'm' was unloaded on the serving peer");
  EXPECT_EQ(D(0).UsedBytes(), 0);
  EXPECT_EQ(D(1).UsedBytes(), 0);
  // The streams end once the receiver has cut its calls.
  for (int i = 0; i < 1000 && D(0).Metric("weightd_peer_serving_streams") != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(D(0).Metric("weightd_peer_serving_streams"), 0);
}

TEST_F(PeerE2ETest, AnotherSchemeOrAShardScopedSplitIsRefusedNamingBothSides) {
  ASSERT_EQ(Start(0).GenerateTiny("tiny", {}).exit_code, 0);
  Start(1);
  ExpectOk(D(0).Ctl({"load", "m", "--path=tiny"}));
  ExpectOk(D(0).Ctl({"load", "s", "--path=tiny", "--scale-scope=shard", "--tp=2"}));
  ExpectRefused(D(1).Ctl({"load", "m", "--peer=" + Address(0), "--scheme=block"}), "FAILED_PRECONDITION",
                "holds model 'm' as SCHEME_PER_TENSOR");
  ExpectRefused(D(1).Ctl({"load", "s", "--peer=" + Address(0), "--scale-scope=shard", "--tp=2"}),
                "FAILED_PRECONDITION", "scale scope shard");
  ExpectRefused(D(1).Ctl({"load", "n", "--peer=" + Address(0)}), "NOT_FOUND", "no model 'n'");
  EXPECT_EQ(D(1).UsedBytes(), 0);
}

TEST_F(PeerE2ETest, APathLoadThatPrefersPeersTakesTheBytesFromOneThatHoldsTheModel) {
  ASSERT_EQ(Start(0).GenerateTiny("tiny", {}).exit_code, 0);
  ExpectOk(D(0).Ctl({"load", "m", "--path=tiny"}));
  // Daemon 1 knows two peers: one that does not answer, and daemon 0.
  Start(1, {"--peers=127.0.0.1:1," + Address(0)});
  ASSERT_EQ(D(1).GenerateTiny("tiny", {}).exit_code, 0);
  ExpectOk(D(1).Ctl({"load", "m", "--path=tiny", "--prefer-peers"}));
  ExpectSameRanks(0, "m", 1, "m", 1);
  EXPECT_GT(ReceivedFrom(1, 0), 0);
  EXPECT_EQ(D(1).Metric("weightd_received_bytes_total{source=\"path\"}"), 0);  // the files' data was not read
  // A model no peer holds comes from the files.
  ExpectOk(D(1).Ctl({"load", "solo", "--path=tiny", "--prefer-peers", "--scheme=block"}));
  EXPECT_GT(D(1).Metric("weightd_received_bytes_total{source=\"path\"}"), 0);
}

TEST_F(PeerE2ETest, ADnsTargetMakesEveryAddressTheNameResolvesToAPeer) {
  ASSERT_EQ(Start(0).GenerateTiny("tiny", {}).exit_code, 0);
  ExpectOk(D(0).Ctl({"load", "m", "--path=tiny"}));
  // localhost resolves to 127.0.0.1 (daemon 0) and, where the host has it, ::1 (nobody).
  Start(1, {absl::StrCat("--peers=dns:///localhost:", D(0).tcp_port())});
  ASSERT_EQ(D(1).GenerateTiny("tiny", {}).exit_code, 0);
  ExpectOk(D(1).Ctl({"load", "m", "--path=tiny", "--prefer-peers"}));
  EXPECT_GT(D(1).Metric(absl::StrCat("weightd_peer_bytes_total{direction=\"received\",peer=\"ipv4:127.0.0.1:",
                                     D(0).tcp_port(), "\"}")),
            0);
  EXPECT_EQ(D(1).Metric("weightd_received_bytes_total{source=\"path\"}"), 0);
  ExpectSameRanks(0, "m", 1, "m", 1);
}

TEST_F(PeerE2ETest, ACorruptedByteOnTheWireIsDataLossNamingTheTensor) {
  const std::string tensor = "model.layers.0.mlp.down_proj.weight";
  ASSERT_EQ(Start(0, {"--test-corrupt-served-tensor=" + tensor}).GenerateTiny("tiny", {}).exit_code, 0);
  Start(1);
  ExpectOk(D(0).Ctl({"load", "m", "--path=tiny"}));
  ExpectRefused(D(1).Ctl({"load", "m", "--peer=" + Address(0)}), "DATA_LOSS", "tensor '" + tensor + "'");
  EXPECT_EQ(D(1).UsedBytes(), 0);
}

}  // namespace
}  // namespace weightd::testing
