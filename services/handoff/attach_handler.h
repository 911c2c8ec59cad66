// The seam between the handle socket and whatever owns the memory it hands out
// (the registry in the daemon, a fake in tests): who is asking, what they get,
// and what happens when their lease ends.
// Thread-safety: Attach and every on_lease_end run on the handle server's poll thread.
#pragma once

#include <sys/types.h>

#include <functional>
#include <vector>

#include "base/unique_fd.h"
#include "weightd/v1/handoff.pb.h"

namespace weightd::handoff {

struct PeerCredentials {
  pid_t pid;
  uid_t uid;
  gid_t gid;
};

struct AttachGrant {
  v1::AttachResponse response;  // code != 0: refused, no descriptors are sent
  std::vector<UniqueFd> fds;    // sent with the response; closed once sent, or when the worker is dropped
  // Called once, when the connection closes: after the worker closed it, or was
  // dropped before its answer was whole, or at shutdown. May be empty.
  std::function<void()> on_lease_end;
};

class AttachHandler {
 public:
  virtual ~AttachHandler() = default;
  // Runs on the server's poll thread: must be quick and must not block.
  virtual AttachGrant Attach(const PeerCredentials& peer, const v1::AttachRequest& request) = 0;
};

}  // namespace weightd::handoff
