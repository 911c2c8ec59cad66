// weightd-bench-attach: how long a restarted worker takes to get a resident model
// back: attach over the handle socket and map every allocation of the rank (VMM
// import on CUDA, mmap on host devices), then release; repeated, median and p99.
// The first attach of the process is reported apart (first_ms): it also pays for
// connecting and, on CUDA, initializing the driver, which a worker does once at
// start whether or not it re-attaches. Prints one JSON line.
//
//   weightd-bench-attach --address=unix:/tmp/w.sock --handle-socket=/tmp/h.sock
//       --model=llama --iterations=50

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "base/dashed_flags.h"
#include "client/cpp/client.h"

ABSL_FLAG(std::string, address, "unix:/run/weightd/weightd.sock", "daemon gRPC address, e.g. --address=unix:/tmp/w.sock");
ABSL_FLAG(std::string, handle_socket, "/run/weightd/handles.sock", "handle socket, e.g. --handle-socket=/tmp/h.sock");
ABSL_FLAG(std::string, model, "", "resident model id, e.g. --model=llama");
ABSL_FLAG(int, rank, 0, "rank to attach, e.g. --rank=0");
ABSL_FLAG(int, iterations, 50, "attaches to time, e.g. --iterations=50");

int main(int argc, char** argv) {
  std::vector<std::string> storage;
  std::vector<char*> args = weightd::AcceptDashedFlags(argc, argv, storage);
  absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  const std::string model = absl::GetFlag(FLAGS_model);
  weightd::client::Client client(
      {.address = absl::GetFlag(FLAGS_address), .handle_socket = absl::GetFlag(FLAGS_handle_socket)});
  std::vector<double> ms;
  size_t allocations = 0, tensors = 0;
  for (int i = 0; i < std::max(1, absl::GetFlag(FLAGS_iterations)); ++i) {
    const auto start = std::chrono::steady_clock::now();
    auto mapping = client.Attach(model, static_cast<uint32_t>(absl::GetFlag(FLAGS_rank)));
    const auto mapped = std::chrono::steady_clock::now();
    if (!mapping.ok()) {
      std::fprintf(stderr, "weightd-bench-attach: %s\n", mapping.status().ToString().c_str());
      return 1;
    }
    allocations = static_cast<size_t>(mapping->manifest().allocations_size());
    tensors = mapping->tensors().size();
    mapping->Release();
    ms.push_back(std::chrono::duration<double, std::milli>(mapped - start).count());
  }
  const double first = ms.front();
  if (ms.size() > 1) ms.erase(ms.begin());  // the statistics are of the attaches after the first
  std::sort(ms.begin(), ms.end());
  auto at = [&](double q) { return ms[std::min(ms.size() - 1, static_cast<size_t>(q * (ms.size() - 1) + 0.5))]; };
  std::printf(
      "{\"tool\":\"weightd-bench-attach\",\"model\":\"%s\",\"iterations\":%zu,\"allocations\":%zu,\"tensors\":%zu,"
      "\"first_ms\":%.3f,\"median_ms\":%.3f,\"p99_ms\":%.3f,\"min_ms\":%.3f,\"max_ms\":%.3f}\n",
      model.c_str(), ms.size(), allocations, tensors, first, at(0.5), at(0.99), ms.front(), ms.back());
  return 0;
}
