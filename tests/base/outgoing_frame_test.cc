#include "base/outgoing_frame.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include "base/fd_passing.h"
#include "gtest/gtest.h"
#include "tests/open_fds.h"

namespace weightd {
namespace {

struct SocketPair {
  SocketPair() {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);  // blocking, both ends
    a.reset(sv[0]);
    b.reset(sv[1]);
  }
  UniqueFd a, b;
};

UniqueFd MemfdWith(const std::string& content) {
  UniqueFd fd(::memfd_create("outgoing_frame_test", MFD_CLOEXEC));
  EXPECT_EQ(::write(fd.get(), content.data(), content.size()), static_cast<ssize_t>(content.size()));
  return fd;
}

using ::weightd::testing::OpenFdCount;

std::string Pattern(size_t size) {
  std::string s(size, '\0');
  for (size_t i = 0; i < size; ++i) s[i] = static_cast<char>(i * 131 + i / 4099);
  return s;
}

TEST(OutgoingFrameTest, ALargeFrameGoesOutInPiecesWithoutBlockingAndArrivesWhole) {
  SocketPair s;
  const std::string payload = Pattern(3 << 20);  // far over the socket's buffer
  std::vector<UniqueFd> fds;
  fds.push_back(MemfdWith("allocation"));
  auto frame = OutgoingFrame::Make(payload, std::move(fds));
  ASSERT_TRUE(frame.ok()) << frame.status();
  EXPECT_EQ(frame->total_bytes(), payload.size() + 4);
  // Nobody reads yet: the socket (blocking, too) takes what fits and the call returns.
  ASSERT_TRUE(frame->SendSome(s.a.get()).ok());
  EXPECT_GT(frame->sent_bytes(), 0u);
  EXPECT_FALSE(frame->done());

  std::string received;
  std::vector<UniqueFd> received_fds;
  absl::Status status;
  std::thread reader([&] { status = RecvFrame(s.b.get(), absl::Seconds(30), &received, &received_fds); });
  while (!frame->done()) {
    struct pollfd p = {s.a.get(), POLLOUT, 0};
    ASSERT_GE(::poll(&p, 1, 30000), 0);
    ASSERT_TRUE(frame->SendSome(s.a.get()).ok());
  }
  reader.join();
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_TRUE(received == payload);
  ASSERT_EQ(received_fds.size(), 1u);  // once, though the frame took many sendmsg calls
  char buf[16] = {};
  EXPECT_EQ(::pread(received_fds[0].get(), buf, sizeof(buf), 0), 10);
  EXPECT_STREQ(buf, "allocation");
}

TEST(OutgoingFrameTest, APeerThatClosedIsUnavailable) {
  SocketPair s;
  auto frame = OutgoingFrame::Make("hello");
  ASSERT_TRUE(frame.ok());
  s.b.reset();
  EXPECT_EQ(frame->SendSome(s.a.get()).code(), absl::StatusCode::kUnavailable);
}

TEST(OutgoingFrameTest, ItsDescriptorsCloseWithItSentOrNot) {
  const int before = OpenFdCount();
  {
    std::vector<UniqueFd> fds;
    fds.push_back(MemfdWith("a"));
    fds.push_back(MemfdWith("b"));
    auto frame = OutgoingFrame::Make("unsent", std::move(fds));
    ASSERT_TRUE(frame.ok());
    EXPECT_EQ(OpenFdCount(), before + 2);
  }
  EXPECT_EQ(OpenFdCount(), before);
  SocketPair s;
  {
    std::vector<UniqueFd> fds;
    fds.push_back(MemfdWith("c"));
    auto frame = OutgoingFrame::Make("sent", std::move(fds));
    ASSERT_TRUE(frame.ok());
    ASSERT_TRUE(frame->SendSome(s.a.get()).ok());
    EXPECT_TRUE(frame->done());
  }
  EXPECT_EQ(OpenFdCount(), before + 2);  // the pair; the memfd lives on only in the socket
  std::string payload;
  std::vector<UniqueFd> fds;
  ASSERT_TRUE(RecvFrame(s.b.get(), absl::Seconds(5), &payload, &fds).ok());
  EXPECT_EQ(payload, "sent");
  EXPECT_EQ(fds.size(), 1u);
}

TEST(OutgoingFrameTest, OverTheLimitsIsInvalidArgument) {
  EXPECT_EQ(OutgoingFrame::Make(std::string(kMaxFrameBytes + 1, 'x')).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<UniqueFd> fds;
  for (size_t i = 0; i <= kMaxFrameFds; ++i) fds.emplace_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  EXPECT_EQ(OutgoingFrame::Make("x", std::move(fds)).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace weightd
