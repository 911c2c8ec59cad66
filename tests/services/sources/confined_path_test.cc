#include "services/sources/confined_path.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"

namespace weightd {
namespace {

namespace fs = std::filesystem;

TEST(ConfinedRelativePathTest, RelativeAndAbsolutePathsUnderTheRootAreNormalized) {
  EXPECT_EQ(*ConfinedRelativePath("/models", "a//b/./c"), "a/b/c");
  EXPECT_EQ(*ConfinedRelativePath("/models", "."), ".");
  EXPECT_EQ(*ConfinedRelativePath("/models/", "/models/x/"), "x");
  EXPECT_EQ(*ConfinedRelativePath("/models", "/models"), ".");
}

TEST(ConfinedRelativePathTest, DotDotAbsoluteElsewhereNulAndEmptyAreInvalidArgument) {
  for (const std::string& path : std::vector<std::string>{"..", "a/../../etc", "a/..", "/etc/passwd", "/modelsX/a", std::string("a\0b", 3), ""}) {
    SCOPED_TRACE(path);
    absl::StatusOr<std::string> r = ConfinedRelativePath("/models", path);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  }
}

class OpenBeneathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/weightd-confined-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    base_ = dir;
    root_ = base_ + "/root";
    fs::create_directories(root_ + "/m");
    std::ofstream(root_ + "/m/model.safetensors") << "inside";
    std::ofstream(base_ + "/secret.safetensors") << "outside";
  }
  void TearDown() override { fs::remove_all(base_); }

  std::string base_, root_;
};

TEST_F(OpenBeneathTest, OpensAFileInsideTheRoot) {
  absl::StatusOr<UniqueFd> fd = OpenBeneath(root_, "m/model.safetensors", O_RDONLY);
  ASSERT_TRUE(fd.ok()) << fd.status();
  char buf[6];
  EXPECT_EQ(::read(fd->get(), buf, 6), 6);
}

TEST_F(OpenBeneathTest, SymlinkLeavingTheRootIsPermissionDenied) {
  fs::create_symlink(base_ + "/secret.safetensors", root_ + "/m/escape.safetensors");
  fs::create_directory_symlink(base_, root_ + "/up");
  for (const char* path : {"m/escape.safetensors", "up/secret.safetensors"}) {
    SCOPED_TRACE(path);
    absl::StatusOr<UniqueFd> fd = OpenBeneath(root_, path, O_RDONLY);
    EXPECT_EQ(fd.status().code(), absl::StatusCode::kPermissionDenied) << fd.status();
  }
}

TEST_F(OpenBeneathTest, SymlinkStayingInsideTheRootIsAllowed) {
  fs::create_symlink("model.safetensors", root_ + "/m/alias.safetensors");
  EXPECT_TRUE(OpenBeneath(root_, "m/alias.safetensors", O_RDONLY).ok());
}

TEST_F(OpenBeneathTest, MissingFileIsNotFound) {
  EXPECT_EQ(OpenBeneath(root_, "m/none.safetensors", O_RDONLY).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace weightd
