#include "client/cpp/lease.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "absl/strings/str_cat.h"
#include "base/fd_passing.h"
#include "base/status_macros.h"

namespace weightd::client {

constexpr int kReleaseWaitMs = 5000;

absl::StatusOr<Lease> Lease::Attach(const std::string& socket_path, const std::string& model_id,
                                    uint32_t rank, absl::Duration timeout) {
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid handle socket path: '", socket_path, "'"));
  }
  socket_path.copy(addr.sun_path, socket_path.size());

  Lease lease;
  lease.connection_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!lease.connection_.valid()) return absl::ErrnoToStatus(errno, "socket");
  int rc;
  do {
    rc = ::connect(lease.connection_.get(), reinterpret_cast<const struct sockaddr*>(&addr), sizeof(addr));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot connect to handle socket ", socket_path, ": ", strerror(errno)));
  }

  v1::AttachRequest request;
  request.set_model_id(model_id);
  request.set_rank(rank);
  WEIGHTD_RETURN_IF_ERROR(SendFrame(lease.connection_.get(), request.SerializeAsString()));
  std::string payload;
  WEIGHTD_RETURN_IF_ERROR(RecvFrame(lease.connection_.get(), timeout, &payload, &lease.fds_));
  v1::AttachResponse response;
  if (!response.ParseFromString(payload)) {
    return absl::DataLossError(absl::StrCat("malformed AttachResponse from ", socket_path));
  }
  if (response.code() != 0) {
    return absl::Status(static_cast<absl::StatusCode>(response.code()), response.message());
  }
  lease.lease_id_ = response.lease_id();
  lease.manifest_ = std::move(*response.mutable_manifest());
  // Descriptors arrive for the fd-backed allocations only, in allocation order;
  // fds() is indexed by allocation, invalid for the others (legacy IPC).
  std::vector<UniqueFd> received = std::move(lease.fds_);
  lease.fds_.clear();
  size_t next = 0;
  for (const v1::Allocation& allocation : lease.manifest_.allocations()) {
    const bool has_fd = allocation.handle_type() == v1::HANDLE_TYPE_MEMFD ||
                        allocation.handle_type() == v1::HANDLE_TYPE_CUDA_VMM_FD;
    if (has_fd && next < received.size()) {
      lease.fds_.push_back(std::move(received[next++]));
    } else {
      lease.fds_.emplace_back();
      if (has_fd) next = received.size() + 1;  // marks the shortfall
    }
  }
  if (next != received.size()) {
    return absl::DataLossError(absl::StrCat("lease for ", model_id, " rank ", rank, " came with ", received.size(),
                                            " file descriptors for ", lease.manifest_.allocations_size(),
                                            " allocations"));
  }
  return lease;
}

Lease::~Lease() { Release(); }

void Lease::Release() {
  fds_.clear();
  if (!connection_.valid()) return;
  // Half-close and wait (bounded) for the daemon to close its end, which it does
  // only after the lease has ended: an unload right after Release() then succeeds.
  ::shutdown(connection_.get(), SHUT_WR);
  struct pollfd p = {connection_.get(), POLLIN, 0};
  char byte;
  while (::poll(&p, 1, kReleaseWaitMs) > 0 && ::recv(connection_.get(), &byte, 1, 0) > 0) {
  }
  connection_.reset();
}

}  // namespace weightd::client
