// TLS on the daemon's TCP listener with every client: weightctl (--tls-ca,
// --tls-cert, --tls-key, --tls-server-name) and the C++ client (ClientOptions::tls)
// are served over mutual TLS, with certificates made for the test; a client
// without a certificate the daemon's CA signed is refused; and a TLS listener
// without --tls-client-ca, or plain TCP, needs its own flag and is warned about.
#include <string>
#include <vector>

#include "client/cpp/client.h"
#include "gtest/gtest.h"
#include "tests/e2e/daemon_process.h"
#include "tests/e2e/tls_files.h"

namespace weightd::testing {
namespace {

class TlsE2ETest : public ::testing::Test {
 protected:
  void SetUp() override { tls_ = MakeTlsFiles(daemon_.dir()); }

  // The Unix socket and a TCP port of the kernel's choosing.
  std::vector<std::string> TcpFlags(std::vector<std::string> flags) const {
    flags.insert(flags.begin(), {"--listen=" + daemon_.grpc_address() + ",127.0.0.1:0",
                                 "--tls-cert=" + tls_.server_cert, "--tls-key=" + tls_.server_key});
    return flags;
  }
  void StartMutual() { daemon_.Start(TcpFlags({"--tls-client-ca=" + tls_.ca})); }
  std::string TcpAddress() const { return "127.0.0.1:" + std::to_string(daemon_.tcp_port()); }

  // weightctl at the TCP address; the server certificate names "localhost".
  CommandResult CtlOverTcp(const std::vector<std::string>& tls_flags, const std::vector<std::string>& args) const {
    std::vector<std::string> all = {"--address=" + TcpAddress(), "--tls-server-name=localhost"};
    all.insert(all.end(), tls_flags.begin(), tls_flags.end());
    all.insert(all.end(), args.begin(), args.end());
    return daemon_.Ctl(all);
  }
  std::vector<std::string> ClientCertificate() const {
    return {"--tls-ca=" + tls_.ca, "--tls-cert=" + tls_.client_cert, "--tls-key=" + tls_.client_key};
  }
  client::Client CppClient(const std::string& cert, const std::string& key) const {
    return client::Client({.address = TcpAddress(),
                           .tls = {.ca_file = tls_.ca, .cert_file = cert, .key_file = key, .server_name = "localhost"},
                           .handle_socket = daemon_.handle_socket()});
  }

  DaemonProcess daemon_;
  TlsFiles tls_;
};

TEST_F(TlsE2ETest, WeightctlLoadsPushesListsAndUnloadsOverMutualTls) {
  daemon_.GenerateTiny("tiny", {"--shards=2"});
  StartMutual();
  ASSERT_NE(daemon_.tcp_port(), 0) << daemon_.log();
  // Two shards pushed on their own channels, each with the same TLS options.
  CommandResult push = CtlOverTcp(ClientCertificate(), {"load", "pushed", "--push=" + daemon_.model_root() + "/tiny"});
  ASSERT_EQ(push.exit_code, 0) << push.err;
  CommandResult path = CtlOverTcp(ClientCertificate(), {"load", "by-path", "--path=tiny"});
  ASSERT_EQ(path.exit_code, 0) << path.err;
  CommandResult list = CtlOverTcp(ClientCertificate(), {"list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_NE(list.out.find("pushed"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("by-path"), std::string::npos) << list.out;
  EXPECT_EQ(CtlOverTcp(ClientCertificate(), {"status"}).exit_code, 0);
  EXPECT_EQ(CtlOverTcp(ClientCertificate(), {"unload", "pushed"}).exit_code, 0);
  EXPECT_EQ(CtlOverTcp(ClientCertificate(), {"unload", "by-path"}).exit_code, 0);
  EXPECT_EQ(daemon_.UsedBytes(), 0);
}

TEST_F(TlsE2ETest, CppClientLoadsListsAndUnloadsOverMutualTls) {
  daemon_.GenerateTiny("tiny", {});
  StartMutual();
  client::Client daemon = CppClient(tls_.client_cert, tls_.client_key);
  absl::StatusOr<v1::Manifest> manifest = daemon.Load(client::PathSpec("tiny", "tiny"));
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  absl::StatusOr<std::vector<v1::ModelInfo>> models = daemon.List();
  ASSERT_TRUE(models.ok()) << models.status();
  ASSERT_EQ(models->size(), 1u);
  EXPECT_EQ((*models)[0].model_id(), "tiny");
  EXPECT_TRUE(daemon.Status().ok());
  absl::StatusOr<uint64_t> freed = daemon.Unload("tiny");
  ASSERT_TRUE(freed.ok()) << freed.status();
  EXPECT_EQ(*freed, manifest->resident_bytes());
}

TEST_F(TlsE2ETest, ClientWithoutACertificateTheCaSignedIsRefused) {
  StartMutual();
  CommandResult no_cert = CtlOverTcp({"--tls-ca=" + tls_.ca}, {"list"});
  EXPECT_EQ(no_cert.exit_code, 1);
  EXPECT_NE(no_cert.err.find("UNAVAILABLE"), std::string::npos) << no_cert.err;
  CommandResult untrusted =
      CtlOverTcp({"--tls-ca=" + tls_.ca, "--tls-cert=" + tls_.untrusted_cert, "--tls-key=" + tls_.untrusted_key},
                 {"list"});
  EXPECT_EQ(untrusted.exit_code, 1);
  EXPECT_NE(untrusted.err.find("UNAVAILABLE"), std::string::npos) << untrusted.err;
  // Plain TCP to a TLS port: the "Socket closed", still refused.
  CommandResult plain = daemon_.Ctl({"--address=" + TcpAddress(), "list"});
  EXPECT_EQ(plain.exit_code, 1);
  EXPECT_NE(plain.err.find("UNAVAILABLE"), std::string::npos) << plain.err;

  EXPECT_EQ(CppClient("", "").List().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(CppClient(tls_.untrusted_cert, tls_.untrusted_key).List().status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_TRUE(CppClient(tls_.client_cert, tls_.client_key).List().ok());
}

TEST_F(TlsE2ETest, ServerCertificateForAnotherNameIsRefusedWithoutTheOverride) {
  StartMutual();
  CommandResult wrong_name = daemon_.Ctl({"--address=" + TcpAddress(), "--tls-ca=" + tls_.ca,
                                          "--tls-cert=" + tls_.client_cert, "--tls-key=" + tls_.client_key, "list"});
  EXPECT_EQ(wrong_name.exit_code, 1);
  EXPECT_NE(wrong_name.err.find("UNAVAILABLE"), std::string::npos) << wrong_name.err;
}

TEST_F(TlsE2ETest, UnreadableTlsFileIsInvalidArgumentNamingIt) {
  StartMutual();
  CommandResult missing = CtlOverTcp({"--tls-ca=" + daemon_.dir() + "/no-such-ca.pem"}, {"list"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("INVALID_ARGUMENT: TLS CA file: cannot read '" + daemon_.dir() + "/no-such-ca.pem'"),
            std::string::npos)
      << missing.err;
  CommandResult half = CtlOverTcp({"--tls-ca=" + tls_.ca, "--tls-cert=" + tls_.client_cert}, {"list"});
  EXPECT_EQ(half.exit_code, 1);
  EXPECT_NE(half.err.find("INVALID_ARGUMENT: TLS client certificate '" + tls_.client_cert + "' has no key file"),
            std::string::npos)
      << half.err;
  absl::Status key_missing = CppClient(tls_.client_cert, daemon_.dir() + "/no-such.key").List().status();
  EXPECT_EQ(key_missing.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(key_missing.message().find("no-such.key"), std::string::npos) << key_missing;
}

TEST_F(TlsE2ETest, TlsWithoutAClientCaNeedsItsFlagAndIsWarnedAbout) {
  CommandResult refused = RunCommand({BinPath("weightd"), "--listen=127.0.0.1:0", "--tls-cert=" + tls_.server_cert,
                                      "--tls-key=" + tls_.server_key, "--handle-socket=" + daemon_.handle_socket(),
                                      "--metrics-address=", "--backend=host"});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_NE(refused.err.find("TCP listener 127.0.0.1:0 needs --tls-client-ca"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("--tls-allow-unauthenticated-clients"), std::string::npos) << refused.err;

  daemon_.Start(TcpFlags({"--tls-allow-unauthenticated-clients"}));
  EXPECT_NE(daemon_.log().find("\"event\":\"tcp_unauthenticated\""), std::string::npos) << daemon_.log();
  EXPECT_NE(daemon_.log().find("TLS without client certificates"), std::string::npos) << daemon_.log();
  // Any client that trusts the server's certificate is served.
  CommandResult anyone = CtlOverTcp({"--tls-ca=" + tls_.ca}, {"list"});
  EXPECT_EQ(anyone.exit_code, 0) << anyone.err;
}

TEST_F(TlsE2ETest, TheUnauthenticatedFlagContradictsAClientCa) {
  CommandResult both = RunCommand({BinPath("weightd"), "--listen=127.0.0.1:0", "--tls-cert=" + tls_.server_cert,
                                   "--tls-key=" + tls_.server_key, "--tls-client-ca=" + tls_.ca,
                                   "--tls-allow-unauthenticated-clients", "--handle-socket=" + daemon_.handle_socket(),
                                   "--metrics-address=", "--backend=host"});
  EXPECT_EQ(both.exit_code, 2);
  EXPECT_NE(both.err.find("--tls-allow-unauthenticated-clients contradicts --tls-client-ca"), std::string::npos)
      << both.err;
}

TEST_F(TlsE2ETest, PlainTcpIsWarnedAbout) {
  daemon_.Start({"--listen=" + daemon_.grpc_address() + ",127.0.0.1:0", "--insecure-tcp"});
  EXPECT_NE(daemon_.log().find("\"event\":\"tcp_unauthenticated\""), std::string::npos) << daemon_.log();
  EXPECT_NE(daemon_.log().find("plain (--insecure-tcp)"), std::string::npos) << daemon_.log();
  CommandResult plain = daemon_.Ctl({"--address=" + TcpAddress(), "list"});
  EXPECT_EQ(plain.exit_code, 0) << plain.err;
}

TEST_F(TlsE2ETest, MutualTlsListenerIsNotWarnedAbout) {
  StartMutual();
  EXPECT_EQ(daemon_.log().find("tcp_unauthenticated"), std::string::npos) << daemon_.log();
}

}  // namespace
}  // namespace weightd::testing
