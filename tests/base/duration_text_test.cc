#include "base/duration_text.h"

#include "gtest/gtest.h"

namespace weightd {
namespace {

TEST(FormatDuration, EachRangeHasItsUnit) {
  EXPECT_EQ(FormatDuration(0), "0 ms");
  EXPECT_EQ(FormatDuration(0.8504), "850 ms");
  EXPECT_EQ(FormatDuration(12.44), "12.4 s");
  EXPECT_EQ(FormatDuration(185), "3 min 05 s");
  EXPECT_EQ(FormatDuration(7620), "2 h 07 min");
  EXPECT_EQ(FormatDuration(-1), "0 ms");
}

}  // namespace
}  // namespace weightd
