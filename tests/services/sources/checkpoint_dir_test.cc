#include "services/sources/checkpoint_dir.h"

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"

namespace weightd {
namespace {

namespace fs = std::filesystem;

class CheckpointDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/weightd-ckpt-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    base_ = dir;
    root_ = base_ + "/root";
    fs::create_directories(root_ + "/m");
    std::ofstream(root_ + "/m/model-1.safetensors") << "x";
    std::ofstream(root_ + "/m/model-2.safetensors") << "x";
    std::ofstream(root_ + "/m/config.json") << "{}";
    fs::create_directories(base_ + "/outside");
    std::ofstream(base_ + "/outside/model.safetensors") << "x";
  }
  void TearDown() override { fs::remove_all(base_); }

  std::string base_, root_;
};

TEST_F(CheckpointDirTest, FindsShardsAndConfigInsideTheRoot) {
  auto files = FindCheckpoint(root_, "m");
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_EQ(files->shards, (std::vector<std::string>{"model-1.safetensors", "model-2.safetensors"}));
  EXPECT_EQ(files->config_json, "{}");
  EXPECT_EQ(files->dir, root_ + "/m");
}

TEST_F(CheckpointDirTest, PathsOutsideTheRootAreInvalidArgumentWhetherOrNotTheyExist) {
  for (const std::string& path : std::vector<std::string>{"../outside", "../does-not-exist", base_ + "/outside", "/nowhere/at/all"}) {
    SCOPED_TRACE(path);
    EXPECT_EQ(FindCheckpoint(root_, path).status().code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST_F(CheckpointDirTest, SymlinkEscapesArePermissionDenied) {
  fs::create_directory_symlink(base_ + "/outside", root_ + "/linked");
  EXPECT_EQ(FindCheckpoint(root_, "linked").status().code(), absl::StatusCode::kPermissionDenied);
  // A shard inside a real checkpoint directory that points outside.
  fs::create_directories(root_ + "/sneaky");
  fs::create_symlink(base_ + "/outside/model.safetensors", root_ + "/sneaky/model.safetensors");
  EXPECT_EQ(FindCheckpoint(root_, "sneaky").status().code(), absl::StatusCode::kPermissionDenied);
}

TEST_F(CheckpointDirTest, IndexNamingAMissingShardIsNotFound) {
  std::ofstream(root_ + "/m/model.safetensors.index.json")
      << R"({"weight_map":{"a":"model-1.safetensors","b":"model-9.safetensors"}})";
  auto files = FindCheckpoint(root_, "m");
  EXPECT_EQ(files.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(files.status().message().find("model-9.safetensors"), std::string::npos) << files.status();
}

TEST_F(CheckpointDirTest, MissingPathInsideTheRootIsNotFound) {
  EXPECT_EQ(FindCheckpoint(root_, "nothing-here").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace weightd
