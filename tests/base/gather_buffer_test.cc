#include "base/gather_buffer.h"

#include <cstring>
#include <string>
#include <utility>

#include "gtest/gtest.h"

namespace weightd {
namespace {

TEST(GatherBufferTest, ExtendsUpToItsCapacityAndNoFurther) {
  GatherBuffer buffer;
  EXPECT_EQ(buffer.Extend(1), nullptr);  // no memory yet
  ASSERT_TRUE(buffer.Reset(10));
  EXPECT_EQ(buffer.capacity(), 10u);
  char* first = buffer.Extend(6);
  ASSERT_EQ(first, buffer.data());
  std::memcpy(first, "gather", 6);
  char* second = buffer.Extend(4);
  ASSERT_EQ(second, buffer.data() + 6);
  std::memcpy(second, "ring", 4);
  EXPECT_EQ(buffer.Extend(1), nullptr);
  EXPECT_EQ(buffer.view(), "gatherring");
  EXPECT_EQ(buffer.Extend(0), buffer.data() + 10);
}

TEST(GatherBufferTest, ResetKeepsMemoryLargeEnoughAndReplacesMemoryTooSmall) {
  GatherBuffer buffer;
  ASSERT_TRUE(buffer.Reset(64));
  buffer.Extend(64);
  const char* kept = buffer.data();
  ASSERT_TRUE(buffer.Reset(32));
  EXPECT_EQ(buffer.data(), kept);
  EXPECT_EQ(buffer.size(), 0u);
  EXPECT_EQ(buffer.capacity(), 64u);
  ASSERT_TRUE(buffer.Reset(1 << 20));
  EXPECT_EQ(buffer.size(), 0u);
  EXPECT_EQ(buffer.capacity(), uint64_t{1} << 20);
  EXPECT_NE(buffer.Extend(1 << 20), nullptr);
}

TEST(GatherBufferTest, CopyOfAndMovesCarryTheBytes) {
  GatherBuffer a = GatherBuffer::CopyOf("weights");
  EXPECT_EQ(a.view(), "weights");
  GatherBuffer b = std::move(a);
  EXPECT_EQ(b.view(), "weights");
  EXPECT_EQ(a.size(), 0u);  // NOLINT(bugprone-use-after-move): a moved-from buffer is empty
  EXPECT_EQ(a.capacity(), 0u);
  a = std::move(b);
  EXPECT_EQ(a.view(), "weights");
  EXPECT_EQ(GatherBuffer::CopyOf("").size(), 0u);
}

}  // namespace
}  // namespace weightd
