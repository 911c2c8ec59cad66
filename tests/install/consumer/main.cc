// Builds against the installed headers and links weightd::client; with no daemon
// behind the socket every call must come back UNAVAILABLE.
#include <cstdio>

#include "client/cpp/client.h"

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  weightd::client::Client client({.address = std::string("unix:") + argv[1], .handle_socket = argv[1]});
  auto models = client.List();
  auto mapping = client.Attach("m", 0);
  bool unavailable = models.status().code() == absl::StatusCode::kUnavailable &&
                     mapping.status().code() == absl::StatusCode::kUnavailable;
  std::printf("consumer: list %s; attach %s\n", models.status().ToString().c_str(),
              mapping.status().ToString().c_str());
  return unavailable ? 0 : 1;
}
