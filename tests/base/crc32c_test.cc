#include "base/crc32c.h"

#include <string>

#include "gtest/gtest.h"

namespace weightd {
namespace {

TEST(Crc32cTest, MatchesTheStandardCheckValues) {
  EXPECT_EQ(Crc32c(0, ""), 0u);
  EXPECT_EQ(Crc32c(0, "123456789"), 0xE3069283u);  // the catalogued check value of CRC-32C
  EXPECT_EQ(Crc32c(0, std::string(32, '\0')), 0x8A9136AAu);  // RFC 3720 B.4
  EXPECT_EQ(Crc32c(0, std::string(32, '\xff')), 0x62A8AB43u);
}

TEST(Crc32cTest, ExtendingEqualsTheWholeAtEverySplit) {
  std::string bytes;
  for (int i = 0; i < 1000; ++i) bytes.push_back(static_cast<char>(i * 7 + 3));
  const uint32_t whole = Crc32c(0, bytes);
  for (size_t split : {size_t{0}, size_t{1}, size_t{7}, size_t{8}, size_t{9}, size_t{500}, bytes.size()}) {
    EXPECT_EQ(Crc32c(Crc32c(0, bytes.substr(0, split)), bytes.substr(split)), whole) << split;
  }
  bytes[123] ^= 1;
  EXPECT_NE(Crc32c(0, bytes), whole);
}

}  // namespace
}  // namespace weightd
