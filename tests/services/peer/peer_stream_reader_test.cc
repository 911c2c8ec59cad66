#include "services/peer/peer_stream_reader.h"

#include <string>

#include "base/crc32c.h"
#include "gtest/gtest.h"

namespace weightd {
namespace {

v1::PeerMessage Data(uint32_t item, uint64_t offset, const std::string& bytes, bool last, uint32_t crc = 0) {
  v1::PeerMessage m;
  v1::PeerData* d = m.mutable_data();
  d->set_item(item);
  d->set_offset(offset);
  d->set_data(bytes);
  d->set_last(last);
  d->set_crc32c(crc);
  return m;
}

class PeerStreamReaderTest : public ::testing::Test {
 protected:
  PeerStreamReader Reader(uint32_t first = 0, uint32_t end = 0, bool description = false) {
    PeerStreamReader r("127.0.0.1:7070", first, end, description);
    r.SetItems({{"a.weight", 6}, {"a.weight_scale", 4}, {"b", 0}});
    return r;
  }
};

TEST_F(PeerStreamReaderTest, ItemsInOrderCompleteWithTheirChecksum) {
  PeerStreamReader r = Reader();
  auto first = r.Next(Data(0, 0, "abc", false));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE(first->complete);
  auto second = r.Next(Data(0, 3, "def", true, Crc32c(0, "abcdef")));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(second->complete);
  EXPECT_EQ(second->crc32c, Crc32c(0, "abcdef"));
  EXPECT_EQ(r.next_item(), 1u);
  EXPECT_FALSE(r.Finish().ok());  // items 1 and 2 are missing
  ASSERT_TRUE(r.Next(Data(1, 0, "wxyz", true, Crc32c(0, "wxyz"))).ok());
  ASSERT_TRUE(r.Next(Data(2, 0, "", true, 0)).ok());  // an empty tensor is one message
  EXPECT_TRUE(r.Finish().ok());
}

TEST_F(PeerStreamReaderTest, AChangedByteIsDataLossNamingTheTensor) {
  PeerStreamReader r = Reader();
  auto event = r.Next(Data(0, 0, "abcdeX", true, Crc32c(0, "abcdef")));
  ASSERT_FALSE(event.ok());
  EXPECT_EQ(event.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(event.status().message().find("tensor 'a.weight'"), std::string::npos) << event.status();
  EXPECT_NE(event.status().message().find("127.0.0.1:7070"), std::string::npos) << event.status();
}

TEST_F(PeerStreamReaderTest, OutOfOrderMessagesAreRefusedWithTheByteOffset) {
  struct Case {
    v1::PeerMessage message;
    std::string text;
  };
  const Case cases[] = {
      {Data(1, 0, "wxyz", true), "item 1 where item 0 ('a.weight') was due"},
      {Data(0, 2, "cd", false), "from byte 2 where byte 0 was due"},
      {Data(0, 0, "abcdefg", true), "past its 6 bytes"},
      {Data(0, 0, "abc", true), "ended tensor 'a.weight' at byte 3 of 6"},
      {Data(0, 0, "abcdef", false), "ended tensor 'a.weight' at byte 6 of 6"},
  };
  for (const Case& c : cases) {
    PeerStreamReader r = Reader();
    auto event = r.Next(c.message);
    ASSERT_FALSE(event.ok()) << c.text;
    EXPECT_EQ(event.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(event.status().message().find(c.text), std::string::npos) << event.status();
  }
}

TEST_F(PeerStreamReaderTest, TheDescriptionComesFirstAndOnce) {
  PeerStreamReader r = Reader(0, 0, /*description=*/true);
  EXPECT_FALSE(r.Next(Data(0, 0, "abc", false)).ok());
  PeerStreamReader s = Reader(0, 0, true);
  v1::PeerMessage model;
  model.mutable_model()->set_model_id("m");
  auto event = s.Next(model);
  ASSERT_TRUE(event.ok());
  EXPECT_TRUE(event->description);
  EXPECT_FALSE(s.Next(model).ok());
  PeerStreamReader t = Reader(0, 0, true);
  EXPECT_EQ(t.Finish().code(), absl::StatusCode::kDataLoss);
}

TEST_F(PeerStreamReaderTest, ARangeEndsAtItsLastItem) {
  PeerStreamReader r = Reader(1, 2);
  EXPECT_FALSE(r.Next(Data(0, 0, "abcdef", true, Crc32c(0, "abcdef"))).ok());
  PeerStreamReader s = Reader(1, 2);
  ASSERT_TRUE(s.Next(Data(1, 0, "wxyz", true, Crc32c(0, "wxyz"))).ok());
  EXPECT_TRUE(s.Finish().ok());
  auto past = s.Next(Data(2, 0, "", true));
  ASSERT_FALSE(past.ok());
  EXPECT_NE(past.status().message().find("after the last item"), std::string::npos) << past.status();
}

}  // namespace
}  // namespace weightd
