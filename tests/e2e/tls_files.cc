#include "tests/e2e/tls_files.h"

#include <stdexcept>
#include <vector>

#include "tests/e2e/daemon_process.h"

namespace weightd::testing {
namespace {

// `openssl req -x509` with a new key; signed by `ca` (with `ca_key`) unless empty.
void MakeCertificate(const std::string& subject, const std::vector<std::string>& extensions, const std::string& ca,
                     const std::string& ca_key, const std::string& cert, const std::string& key) {
  std::vector<std::string> argv = {"/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                                   "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", subject,
                                   "-keyout", key, "-out", cert};
  for (const std::string& extension : extensions) argv.insert(argv.end(), {"-addext", extension});
  if (!ca.empty()) argv.insert(argv.end(), {"-CA", ca, "-CAkey", ca_key});
  CommandResult made = RunCommand(argv);
  if (made.exit_code != 0) throw std::runtime_error("openssl req for " + subject + ": " + made.err);
}

}  // namespace

TlsFiles MakeTlsFiles(const std::string& dir) {
  TlsFiles files;
  files.ca = dir + "/ca.pem";
  files.server_cert = dir + "/server.pem";
  files.server_key = dir + "/server.key";
  files.client_cert = dir + "/client.pem";
  files.client_key = dir + "/client.key";
  files.untrusted_cert = dir + "/untrusted.pem";
  files.untrusted_key = dir + "/untrusted.key";
  const std::string leaf = "basicConstraints=critical,CA:FALSE";
  MakeCertificate("/CN=weightd-test-ca", {}, "", "", files.ca, dir + "/ca.key");
  MakeCertificate("/CN=localhost", {leaf, "subjectAltName=DNS:localhost"}, files.ca, dir + "/ca.key",
                  files.server_cert, files.server_key);
  MakeCertificate("/CN=weightd-test-client", {leaf}, files.ca, dir + "/ca.key", files.client_cert, files.client_key);
  MakeCertificate("/CN=weightd-test-untrusted", {leaf}, "", "", files.untrusted_cert, files.untrusted_key);
  return files;
}

}  // namespace weightd::testing
