// libFuzzer target for the handle socket's request decoder. Input: one control
// byte (the size of each recv, 1..256; 0: everything at once), then the bytes a
// client sends. They are handed over as the server's poll loop does: never more
// than wanted(). Refusals must be INVALID_ARGUMENT; a whole frame must never ask
// for more bytes; nothing may crash.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "services/handoff/request_frame.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t step = data[0] == 0 ? size : data[0];
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  weightd::handoff::RequestFrameDecoder decoder;
  while (!in.empty() && !decoder.complete()) {
    size_t take = std::min({step, decoder.wanted(), in.size()});
    absl::Status appended = decoder.Append(in.substr(0, take));
    in.remove_prefix(take);
    if (!appended.ok()) {
      if (appended.code() != absl::StatusCode::kInvalidArgument) std::abort();
      return 0;
    }
    if (decoder.length_known() && decoder.wanted() > weightd::handoff::kMaxRequestBytes) std::abort();
  }
  if (!decoder.complete()) return 0;
  if (decoder.wanted() != 0) std::abort();
  auto request = decoder.Parse();
  if (!request.ok()) {
    if (request.status().code() != absl::StatusCode::kInvalidArgument) {
      std::fprintf(stderr, "unexpected status: %s\n", request.status().ToString().c_str());
      std::abort();
    }
    return 0;
  }
  if (request->model_id().empty() || request->model_id().size() > weightd::handoff::kMaxModelIdBytes) std::abort();
  return 0;
}
