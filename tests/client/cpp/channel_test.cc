// ChannelCredentialsFor (client/cpp/channel.h): which credentials each address
// and TlsOptions give, and the INVALID_ARGUMENT that names a TLS file that cannot
// be used. The handshakes themselves are in tests/e2e/tls_e2e_test.cc.
#include "client/cpp/channel.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace weightd::client {
namespace {

class ChannelCredentialsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/weightd-channel-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    std::ofstream(dir_ + "/empty.pem");
    std::ofstream(dir_ + "/ca.pem") << "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  absl::Status For(const std::string& address, const TlsOptions& tls) {
    return ChannelCredentialsFor(address, tls).status();
  }

  std::string dir_;
};

TEST_F(ChannelCredentialsTest, UnixSocketsNeverReadTlsFiles) {
  const TlsOptions missing{.ca_file = dir_ + "/missing.pem"};
  EXPECT_TRUE(For("unix:/run/weightd/weightd.sock", missing).ok());
  EXPECT_TRUE(For("unix:///run/weightd/weightd.sock", missing).ok());
  EXPECT_TRUE(For("/run/weightd/weightd.sock", missing).ok());
  EXPECT_TRUE(For("unix-abstract:weightd", missing).ok());
}

TEST_F(ChannelCredentialsTest, TcpWithoutTlsOptionsIsPlainAndWithThemReadsEveryFile) {
  EXPECT_TRUE(For("127.0.0.1:9500", {}).ok());
  EXPECT_TRUE(For("127.0.0.1:9500", {.ca_file = dir_ + "/ca.pem"}).ok());
  EXPECT_TRUE(For("127.0.0.1:9500", {.server_name = "weightd.example"}).ok()) << "the system's roots";
  EXPECT_TRUE(
      For("dns:weightd:9500", {.ca_file = dir_ + "/ca.pem", .cert_file = dir_ + "/ca.pem", .key_file = dir_ + "/ca.pem"})
          .ok());
}

TEST_F(ChannelCredentialsTest, UnusableFilesAreInvalidArgumentNamingThem) {
  absl::Status missing = For("127.0.0.1:9500", {.ca_file = dir_ + "/missing.pem"});
  EXPECT_EQ(missing.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(missing.message(), "TLS CA file: cannot read '" + dir_ + "/missing.pem': No such file or directory");
  absl::Status empty = For("127.0.0.1:9500", {.ca_file = dir_ + "/ca.pem", .cert_file = dir_ + "/empty.pem",
                                              .key_file = dir_ + "/ca.pem"});
  EXPECT_EQ(empty.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(empty.message(), "TLS certificate file: '" + dir_ + "/empty.pem' holds no PEM block");
  absl::Status directory = For("127.0.0.1:9500", {.cert_file = dir_ + "/ca.pem", .key_file = dir_});
  EXPECT_EQ(directory.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(directory.message(), "TLS key file: cannot read '" + dir_ + "': Is a directory");
}

TEST_F(ChannelCredentialsTest, CertificateAndKeyGoTogether) {
  absl::Status no_key = For("127.0.0.1:9500", {.cert_file = dir_ + "/ca.pem"});
  EXPECT_EQ(no_key.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(no_key.message(), "TLS client certificate '" + dir_ + "/ca.pem' has no key file");
  absl::Status no_cert = For("127.0.0.1:9500", {.key_file = dir_ + "/ca.pem"});
  EXPECT_EQ(no_cert.message(), "TLS client key '" + dir_ + "/ca.pem' has no certificate file");
}

TEST_F(ChannelCredentialsTest, MakeChannelCarriesTheError) {
  auto channel = MakeChannel("127.0.0.1:9500", {.ca_file = dir_ + "/missing.pem"});
  EXPECT_EQ(channel.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(MakeChannel("unix:/run/weightd/weightd.sock"), nullptr);
}

}  // namespace
}  // namespace weightd::client
