#include "services/sources/direct_read.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace weightd {
namespace {

// A file of `size` bytes, byte i = (i * 7 + i / 4096) % 251, in a directory on disk.
class DirectReadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    dir_ = std::string(tmp != nullptr ? tmp : "/tmp") + "/direct_read_XXXXXX";
    ASSERT_NE(::mkdtemp(dir_.data()), nullptr);
  }
  void TearDown() override {
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }
  int Write(uint64_t size) {
    path_ = dir_ + "/shard.safetensors";
    bytes_.resize(size);
    for (uint64_t i = 0; i < size; ++i) bytes_[i] = static_cast<char>((i * 7 + i / 4096) % 251);
    FILE* f = std::fopen(path_.c_str(), "wb");
    std::fwrite(bytes_.data(), 1, bytes_.size(), f);
    std::fclose(f);
    return ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  }
  std::string dir_, path_;
  std::vector<char> bytes_;
};

TEST_F(DirectReadTest, UnalignedRangesComeBackExactWithManyRequestsInFlight) {
  const int fd = Write(3 * 1024 * 1024 + 123);
  ASSERT_GE(fd, 0);
  auto file = DirectFile::Open(fd, "shard.safetensors");
  if (!file.ok() && file.status().code() == absl::StatusCode::kFailedPrecondition) {
    ::close(fd);
    GTEST_SKIP() << file.status();  // a temporary directory on tmpfs
  }
  ASSERT_TRUE(file.ok()) << file.status();
  DirectBuffer buffer;
  struct Case {
    uint64_t offset, n, piece;
    int in_flight;
  };
  for (const Case c : {Case{0, 4096, 4096, 1}, Case{1, 10, 4096, 4}, Case{4095, 70000, 8192, 3},
                       Case{12345, 2 * 1024 * 1024, 65536, 8}, Case{100, 3 * 1024 * 1024, 1 << 20, 2}}) {
    auto read = file->ReadRange(c.offset, c.n, buffer, c.piece, c.in_flight);
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_EQ(read->got, c.n) << c.offset;
    EXPECT_EQ(std::string(read->bytes, c.n), std::string(bytes_.data() + c.offset, c.n)) << c.offset;
  }
  ::close(fd);
}

TEST_F(DirectReadTest, ARangePastTheEndOfTheFileSaysHowMuchArrived) {
  const int fd = Write(100000);
  ASSERT_GE(fd, 0);
  auto file = DirectFile::Open(fd, "shard.safetensors");
  if (!file.ok()) {
    ::close(fd);
    GTEST_SKIP() << file.status();
  }
  DirectBuffer buffer;
  auto read = file->ReadRange(90000, 50000, buffer, 8192, 4);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->got, 10000u);
  EXPECT_EQ(std::string(read->bytes, read->got), std::string(bytes_.data() + 90000, 10000));
  auto beyond = file->ReadRange(200000, 10, buffer, 8192, 2);
  ASSERT_TRUE(beyond.ok());
  EXPECT_EQ(beyond->got, 0u);
  ::close(fd);
}

TEST(DirectRead, AFileSystemWithoutODirectIsAPreconditionNotACrash) {
  // /dev/shm is tmpfs on Linux, which refuses O_DIRECT on older kernels (newer ones allow it).
  const std::string path = "/dev/shm/weightd_direct_read_test_" + std::to_string(::getpid());
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) GTEST_SKIP() << "no /dev/shm";
  ::unlink(path.c_str());
  auto file = DirectFile::Open(fd, "on-tmpfs.safetensors");
  if (!file.ok()) {
    EXPECT_EQ(file.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_NE(file.status().message().find("on-tmpfs.safetensors"), std::string::npos) << file.status();
  }
  ::close(fd);
}

TEST(DirectRead, ABadDescriptorIsAPreconditionNamingTheFile) {
  auto file = DirectFile::Open(-1, "gone.safetensors");
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(file.status().message().find("gone.safetensors"), std::string::npos);
}

}  // namespace
}  // namespace weightd
