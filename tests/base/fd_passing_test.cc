#include "base/fd_passing.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/open_fds.h"

namespace weightd {
namespace {

struct SocketPair {
  SocketPair() {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    a.reset(sv[0]);
    b.reset(sv[1]);
  }
  UniqueFd a, b;
};

UniqueFd MemfdWith(const std::string& content) {
  UniqueFd fd(::memfd_create("fd_passing_test", MFD_CLOEXEC));
  EXPECT_TRUE(fd.valid());
  EXPECT_EQ(::write(fd.get(), content.data(), content.size()), static_cast<ssize_t>(content.size()));
  return fd;
}

std::string ReadAll(int fd) {
  std::string out(4096, '\0');
  ssize_t n = ::pread(fd, out.data(), out.size(), 0);
  out.resize(n < 0 ? 0 : n);
  return out;
}

using ::weightd::testing::OpenFdCount;

void WriteRaw(int fd, const std::string& bytes) {
  ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
}

TEST(FdPassingTest, FrameWithoutFds) {
  SocketPair s;
  ASSERT_TRUE(SendFrame(s.a.get(), "hello").ok());
  ASSERT_TRUE(SendFrame(s.a.get(), "").ok());
  std::string payload;
  std::vector<UniqueFd> fds;
  ASSERT_TRUE(RecvFrame(s.b.get(), absl::Seconds(1), &payload, &fds).ok());
  EXPECT_EQ(payload, "hello");
  EXPECT_TRUE(fds.empty());
  ASSERT_TRUE(RecvFrame(s.b.get(), absl::Seconds(1), &payload, &fds).ok());
  EXPECT_EQ(payload, "");
}

TEST(FdPassingTest, HeaderIsLittleEndianLength) {
  SocketPair s;
  ASSERT_TRUE(SendFrame(s.a.get(), "abc").ok());
  char raw[7];
  ASSERT_EQ(::read(s.b.get(), raw, sizeof(raw)), 7);
  EXPECT_EQ(std::string(raw, 7), std::string("\x03\x00\x00\x00" "abc", 7));
}

TEST(FdPassingTest, FdsTravelWithTheirFrame) {
  SocketPair s;
  UniqueFd m1 = MemfdWith("first"), m2 = MemfdWith("second"), m3 = MemfdWith("third");
  ASSERT_TRUE(SendFrame(s.a.get(), "two", {m1.get(), m2.get()}).ok());
  ASSERT_TRUE(SendFrame(s.a.get(), "none").ok());
  ASSERT_TRUE(SendFrame(s.a.get(), "one", {m3.get()}).ok());
  std::string payload;
  std::vector<UniqueFd> fds;
  ASSERT_TRUE(RecvFrame(s.b.get(), absl::Seconds(1), &payload, &fds).ok());
  EXPECT_EQ(payload, "two");
  ASSERT_EQ(fds.size(), 2u);
  EXPECT_EQ(ReadAll(fds[0].get()), "first");
  EXPECT_EQ(ReadAll(fds[1].get()), "second");
  EXPECT_NE(::fcntl(fds[0].get(), F_GETFD) & FD_CLOEXEC, 0);
  ASSERT_TRUE(RecvFrame(s.b.get(), absl::Seconds(1), &payload, &fds).ok());
  EXPECT_EQ(payload, "none");
  EXPECT_TRUE(fds.empty());
  ASSERT_TRUE(RecvFrame(s.b.get(), absl::Seconds(1), &payload, &fds).ok());
  EXPECT_EQ(payload, "one");
  ASSERT_EQ(fds.size(), 1u);
  EXPECT_EQ(ReadAll(fds[0].get()), "third");
}

TEST(FdPassingTest, MaximumFdsPerFrame) {
  SocketPair s;
  UniqueFd m = MemfdWith("x");
  std::vector<int> fds(kMaxFrameFds, m.get());
  ASSERT_TRUE(SendFrame(s.a.get(), "many", fds).ok());
  std::string payload;
  std::vector<UniqueFd> got;
  ASSERT_TRUE(RecvFrame(s.b.get(), absl::Seconds(1), &payload, &got).ok());
  EXPECT_EQ(got.size(), kMaxFrameFds);
  fds.push_back(m.get());
  EXPECT_EQ(SendFrame(s.a.get(), "too many", fds).code(), absl::StatusCode::kInvalidArgument);
}

TEST(FdPassingTest, TruncatedFdsAreClosedAndRejected) {
  SocketPair s;
  UniqueFd m = MemfdWith("x");
  std::vector<int> fds(253, m.get());  // the kernel's SCM_MAX_FD: more than RecvFrame takes
  alignas(struct cmsghdr) char control[CMSG_SPACE(253 * sizeof(int))];
  std::string frame("\x01\x00\x00\x00z", 5);
  struct iovec iov = {frame.data(), frame.size()};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
  std::memcpy(CMSG_DATA(c), fds.data(), fds.size() * sizeof(int));
  ASSERT_EQ(::sendmsg(s.a.get(), &msg, 0), 5);
  int before = OpenFdCount();
  std::string payload;
  std::vector<UniqueFd> got;
  EXPECT_EQ(RecvFrame(s.b.get(), absl::Seconds(1), &payload, &got).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(got.empty());
  EXPECT_EQ(OpenFdCount(), before);
}

TEST(FdPassingTest, LargeFrameWithPartialWritesAndReads) {
  SocketPair s;
  std::string big(8 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 + (i >> 13));
  UniqueFd m = MemfdWith("big");
  std::thread sender([&] { EXPECT_TRUE(SendFrame(s.a.get(), big, {m.get()}).ok()); });
  std::string payload;
  std::vector<UniqueFd> fds;
  ASSERT_TRUE(RecvFrame(s.b.get(), absl::Seconds(10), &payload, &fds).ok());
  sender.join();
  EXPECT_EQ(payload, big);
  ASSERT_EQ(fds.size(), 1u);
  EXPECT_EQ(ReadAll(fds[0].get()), "big");
}

TEST(FdPassingTest, FrameArrivingInPieces) {
  SocketPair s;
  std::thread writer([&] {
    const std::string pieces[] = {std::string("\x05\x00", 2), std::string("\x00\x00", 2), "wor", "ld"};
    for (const std::string& piece : pieces) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      WriteRaw(s.a.get(), piece);
    }
  });
  std::string payload;
  std::vector<UniqueFd> fds;
  ASSERT_TRUE(RecvFrame(s.b.get(), absl::Seconds(5), &payload, &fds).ok());
  writer.join();
  EXPECT_EQ(payload, "world");
}

TEST(FdPassingTest, Timeout) {
  SocketPair s;
  std::string payload;
  std::vector<UniqueFd> fds;
  EXPECT_EQ(RecvFrame(s.b.get(), absl::Milliseconds(50), &payload, &fds).code(),
            absl::StatusCode::kDeadlineExceeded);
  WriteRaw(s.a.get(), std::string("\x09\x00\x00\x00" "abc", 7));
  EXPECT_EQ(RecvFrame(s.b.get(), absl::Milliseconds(50), &payload, &fds).code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST(FdPassingTest, PeerClosedBeforeAnyByte) {
  SocketPair s;
  s.a.reset();
  std::string payload;
  std::vector<UniqueFd> fds;
  absl::Status status = RecvFrame(s.b.get(), absl::InfiniteDuration(), &payload, &fds);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(status.message(), "peer closed the connection");
}

TEST(FdPassingTest, PeerClosedMidFrame) {
  for (const std::string& partial : {std::string("\x09\x00", 2), std::string("\x09\x00\x00\x00" "abc", 7)}) {
    SocketPair s;
    WriteRaw(s.a.get(), partial);
    s.a.reset();
    std::string payload;
    std::vector<UniqueFd> fds;
    EXPECT_EQ(RecvFrame(s.b.get(), absl::Seconds(1), &payload, &fds).code(), absl::StatusCode::kDataLoss);
  }
}

TEST(FdPassingTest, OverLongFrame) {
  SocketPair s;
  WriteRaw(s.a.get(), std::string("\x01\x00\x00\x01", 4));  // 16 MiB + 1
  std::string payload;
  std::vector<UniqueFd> fds;
  absl::Status status = RecvFrame(s.b.get(), absl::Seconds(1), &payload, &fds);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("16777217"), std::string::npos) << status;
  EXPECT_EQ(SendFrame(s.a.get(), std::string(kMaxFrameBytes + 1, 'x')).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(FdPassingTest, SendToClosedPeerIsUnavailable) {
  SocketPair s;
  s.b.reset();
  EXPECT_EQ(SendFrame(s.a.get(), "lost").code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace weightd
