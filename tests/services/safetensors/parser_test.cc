#include "services/safetensors/parser.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/safetensors/writer.h"

namespace weightd::safetensors {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using kernels::DType;

constexpr char kShard[] = "shard-7.safetensors";

std::string LengthPrefix(uint64_t n) {
  std::string p(8, '\0');
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return p;
}

std::string Shard(const std::string& json, const std::string& data) {
  return LengthPrefix(json.size()) + json + data;
}

std::string Pattern(size_t n, uint8_t seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(seed + i * 37);
  return s;
}

// Records what the parser delivers, merging consecutive byte calls of one tensor
// so that traces from different chunkings compare equal, and checks the contract:
// bytes of a tensor in order without gaps, within its size, and completions in index
// order after all of its bytes.
class RecordingSink : public TensorSink {
 public:
  explicit RecordingSink(const ShardParser* parser) : parser_(parser) {}

  absl::Status OnTensorBytes(size_t index, uint64_t offset, std::string_view bytes) override {
    EXPECT_EQ(index, completed_) << "bytes for a tensor other than the next incomplete one";
    EXPECT_FALSE(bytes.empty()) << "empty OnTensorBytes";
    const TensorHeader& t = parser_->header().tensors.at(index);
    EXPECT_EQ(offset, current_.size()) << "gap or repeat in tensor " << t.name;
    EXPECT_LE(offset + bytes.size(), t.size());
    current_.append(bytes.data(), bytes.size());
    ++byte_calls;
    if (fail_bytes_at && *fail_bytes_at == index) return absl::ResourceExhaustedError("sink full");
    return absl::OkStatus();
  }

  absl::Status OnTensorComplete(size_t index) override {
    EXPECT_EQ(index, completed_) << "completion out of order";
    const TensorHeader& t = parser_->header().tensors.at(index);
    EXPECT_EQ(current_.size(), t.size()) << "completed before every byte of " << t.name;
    trace.push_back(absl::StrCat("T", index, ":", t.name, "=", current_));
    tensors.push_back(current_);
    current_.clear();
    ++completed_;
    return absl::OkStatus();
  }

  std::vector<std::string> trace;    // one entry per completed tensor
  std::vector<std::string> tensors;  // bytes of each completed tensor
  size_t byte_calls = 0;
  std::optional<size_t> fail_bytes_at;

 private:
  const ShardParser* parser_;
  std::string current_;
  size_t completed_ = 0;
};

// Feeds `file` in chunks whose sizes `next_size` picks, header then data, the way a
// source loop does, and finishes. Returns the first error.
absl::Status FeedAll(ShardParser& parser, std::string_view file, const std::function<size_t()>& next_size,
                     TensorSink& sink) {
  while (!file.empty()) {
    std::string_view chunk = file.substr(0, std::max<size_t>(1, next_size()));
    file.remove_prefix(chunk.size());
    if (!parser.header_complete()) {
      absl::StatusOr<size_t> used = parser.FeedHeader(chunk);
      if (!used.ok()) return used.status();
      chunk.remove_prefix(*used);
      if (!parser.header_complete()) {
        EXPECT_TRUE(chunk.empty());
        continue;
      }
    }
    if (absl::Status s = parser.FeedData(chunk, sink); !s.ok()) return s;
  }
  return parser.Finish(sink);
}

std::function<size_t()> Fixed(size_t n) {
  return [n] { return n; };
}

struct Result {
  absl::Status status;
  std::vector<std::string> trace;
};

Result ParseWith(std::string_view file, const std::function<size_t()>& sizes, std::optional<uint64_t> declared,
                 const ParseLimits& limits = {}) {
  ShardParser parser(kShard, limits, declared);
  RecordingSink sink(&parser);
  Result r;
  r.status = FeedAll(parser, file, sizes, sink);
  r.trace = sink.trace;
  if (r.status.ok()) {
    EXPECT_EQ(parser.position(), file.size());
  }
  return r;
}

// Every chunking the tests use: 1 byte, 7 bytes, the whole file, and random sizes.
std::vector<std::pair<std::string, std::function<size_t()>>> Chunkings(size_t whole) {
  std::vector<std::pair<std::string, std::function<size_t()>>> out = {
      {"1", Fixed(1)}, {"7", Fixed(7)}, {"8", Fixed(8)}, {"whole", Fixed(whole)}};
  for (uint32_t seed : {1u, 2u, 3u, 42u, 1234u}) {
    auto rng = std::make_shared<std::mt19937>(seed);
    out.emplace_back(absl::StrCat("random", seed), [rng] { return std::uniform_int_distribution<size_t>(1, 40)(*rng); });
  }
  return out;
}

struct TestShard {
  std::string file;
  std::vector<std::string> names;  // in file order
  std::vector<std::string> data;   // bytes of each tensor, in file order
};

TestShard MakeShard(const std::vector<TensorSpec>& specs,
                    const std::vector<std::pair<std::string, std::string>>& metadata = {}) {
  TestShard s;
  std::string data;
  uint8_t seed = 1;
  for (const TensorSpec& t : specs) {
    size_t n = kernels::DTypeSize(t.dtype);
    for (int64_t d : t.shape) n *= static_cast<size_t>(d);
    s.names.push_back(t.name);
    s.data.push_back(Pattern(n, seed += 11));
    data += s.data.back();
  }
  s.file = Shard(BuildHeaderJson(specs, metadata), data);
  return s;
}

std::vector<std::string> ExpectedTrace(const TestShard& s) {
  std::vector<std::string> trace;
  for (size_t i = 0; i < s.names.size(); ++i) trace.push_back(absl::StrCat("T", i, ":", s.names[i], "=", s.data[i]));
  return trace;
}

TEST(ShardParser, EveryChunkingGivesTheSameCalls) {
  TestShard s = MakeShard({{"z.first", DType::kF32, {0}},
                           {"embed", DType::kBF16, {7, 5}},
                           {"scalar", DType::kF32, {}},
                           {"z.mid", DType::kF16, {3, 0, 2}},
                           {"w", DType::kF16, {33}},
                           {"q", DType::kF8E4M3, {3, 3}},
                           {"z.last1", DType::kF8E4M3, {0}},
                           {"z.last2", DType::kBF16, {0, 0}}},
                          {{"format", "pt"}});
  std::vector<std::string> expected = ExpectedTrace(s);
  for (std::optional<uint64_t> declared : {std::optional<uint64_t>(), std::optional<uint64_t>(s.file.size())}) {
    for (auto& [label, sizes] : Chunkings(s.file.size())) {
      Result r = ParseWith(s.file, sizes, declared);
      ASSERT_TRUE(r.status.ok()) << label << ": " << r.status;
      EXPECT_EQ(r.trace, expected) << label;
    }
  }
}

TEST(ShardParser, HeaderIsExposedOnceComplete) {
  TestShard s = MakeShard({{"a", DType::kF32, {2}}, {"b", DType::kBF16, {3}}}, {{"k", "v"}});
  ShardParser parser(kShard, {}, std::nullopt);
  EXPECT_FALSE(parser.header_complete());
  std::string_view file = s.file;
  absl::StatusOr<size_t> used = parser.FeedHeader(file);
  ASSERT_TRUE(used.ok()) << used.status();
  EXPECT_EQ(*used, s.file.size() - 14);  // exactly up to the data section
  EXPECT_TRUE(parser.header_complete());
  EXPECT_EQ(parser.position(), *used);
  EXPECT_EQ(parser.header().data_size, 14u);
  EXPECT_EQ(parser.header().file_size(), s.file.size());
  ASSERT_EQ(parser.header().metadata.size(), 1u);
  // More header feeding once complete consumes nothing.
  used = parser.FeedHeader(file.substr(*used));
  ASSERT_TRUE(used.ok());
  EXPECT_EQ(*used, 0u);
}

TEST(ShardParser, ZeroSizeTensorsOnly) {
  TestShard s = MakeShard({{"a", DType::kF32, {0}}, {"b", DType::kBF16, {0, 9}}});
  for (auto& [label, sizes] : Chunkings(s.file.size())) {
    Result r = ParseWith(s.file, sizes, s.file.size());
    ASSERT_TRUE(r.status.ok()) << label << ": " << r.status;
    EXPECT_EQ(r.trace, (std::vector<std::string>{"T0:a=", "T1:b="})) << label;
  }
  // Without any FeedData call: Finish completes them.
  ShardParser parser(kShard, {}, std::nullopt);
  RecordingSink sink(&parser);
  ASSERT_TRUE(parser.FeedHeader(s.file).ok());
  EXPECT_TRUE(parser.Finish(sink).ok());
  EXPECT_EQ(sink.trace, (std::vector<std::string>{"T0:a=", "T1:b="}));
  EXPECT_EQ(sink.byte_calls, 0u);
}

TEST(ShardParser, EmptyShard) {
  std::string file = Shard("{}      ", "");
  Result r = ParseWith(file, Fixed(3), file.size());
  EXPECT_TRUE(r.status.ok()) << r.status;
  EXPECT_TRUE(r.trace.empty());
  // An empty FeedData is fine.
  ShardParser parser(kShard, {}, std::nullopt);
  RecordingSink sink(&parser);
  ASSERT_TRUE(parser.FeedHeader(file).ok());
  EXPECT_TRUE(parser.FeedData("", sink).ok());
  EXPECT_TRUE(parser.Finish(sink).ok());
}

TEST(ShardParser, EveryTruncationIsDataLoss) {
  TestShard s = MakeShard({{"a", DType::kF32, {3}}, {"z", DType::kF32, {0}}, {"b", DType::kBF16, {4}}});
  const uint64_t data_start = s.file.size() - 20;
  for (size_t cut = 0; cut < s.file.size(); ++cut) {
    Result r = ParseWith(std::string_view(s.file).substr(0, cut), Fixed(5), std::nullopt);
    ASSERT_EQ(r.status.code(), absl::StatusCode::kDataLoss) << cut << ": " << r.status;
    std::string m(r.status.message());
    EXPECT_THAT(m, AllOf(HasSubstr("shard 'shard-7.safetensors': "),
                         HasSubstr(absl::StrCat("stream ended at file byte offset ", cut))))
        << cut;
    if (cut < 8) {
      EXPECT_THAT(m, HasSubstr("inside the 8-byte header length")) << cut;
    } else if (cut < data_start) {
      EXPECT_THAT(m, HasSubstr(absl::StrCat("inside the header (", data_start - 8, " bytes, ending at file byte offset ",
                                            data_start, ")")))
          << cut;
    } else if (cut < data_start + 12) {
      EXPECT_THAT(m, HasSubstr(absl::StrCat("tensor 'a': stream ended at file byte offset ", cut, " after ",
                                            cut - data_start, " of the tensor's 12 bytes (the file should be ",
                                            s.file.size(), " bytes)")))
          << cut;
      // Everything delivered before the cut was delivered in order.
      EXPECT_TRUE(r.trace.empty());
    } else {
      EXPECT_THAT(m, HasSubstr(absl::StrCat("tensor 'b': stream ended at file byte offset ", cut, " after ",
                                            cut - data_start - 12, " of the tensor's 8 bytes")))
          << cut;
      EXPECT_EQ(r.trace, (std::vector<std::string>{absl::StrCat("T0:a=", s.data[0]), "T1:z="})) << cut;
    }
  }
}

TEST(ShardParser, HeaderLengthBeyondDeclaredSize) {
  std::string json = BuildHeaderJson({{"a", DType::kF32, {1}}}, {});
  std::string file = Shard(json, Pattern(4, 0));
  // Declared size shorter than the header: refused at the 8th byte, before any header byte.
  ShardParser parser(kShard, {}, 8 + json.size() - 1);
  absl::StatusOr<size_t> used = parser.FeedHeader(std::string_view(file).substr(0, 8));
  ASSERT_FALSE(used.ok());
  EXPECT_EQ(used.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(used.status().message()),
              HasSubstr(absl::StrCat("shard 'shard-7.safetensors': header length ", json.size(),
                                     " beyond the file size ", 8 + json.size() - 1,
                                     " (the header would end at file byte offset ", 8 + json.size(), ")")));
  // Sticky.
  EXPECT_EQ(parser.FeedHeader("x").status(), used.status());
  RecordingSink sink(&parser);
  EXPECT_EQ(parser.FeedData("x", sink), used.status());
  EXPECT_EQ(parser.Finish(sink), used.status());

  // A huge length from a hostile prefix prints exactly.
  ParseLimits big;
  big.max_header_bytes = ~uint64_t{0};
  ShardParser hostile(kShard, big, 100);
  used = hostile.FeedHeader(LengthPrefix(~uint64_t{0}));
  ASSERT_EQ(used.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(used.status().message()),
              HasSubstr("header length 18446744073709551615 beyond the file size 100 (the header would end at file "
                        "byte offset 18446744073709551623)"));

  // Declared size below the length prefix itself.
  ShardParser tiny(kShard, {}, 7);
  used = tiny.FeedHeader("\x01");
  ASSERT_EQ(used.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(used.status().message()), HasSubstr("file size 7 is smaller than the 8-byte header length"));
}

TEST(ShardParser, OversizedHeader) {
  ParseLimits limits;
  limits.max_header_bytes = 64;
  std::string file = Shard(std::string("{}") + std::string(70, ' '), "");
  for (auto& [label, sizes] : Chunkings(file.size())) {
    Result r = ParseWith(file, sizes, std::nullopt, limits);
    ASSERT_EQ(r.status.code(), absl::StatusCode::kInvalidArgument) << label;
    EXPECT_THAT(std::string(r.status.message()),
                HasSubstr("shard 'shard-7.safetensors': header length 72 exceeds the limit of 64 bytes"));
  }
  // The check happens at the length prefix: nothing after it is consumed.
  ShardParser parser(kShard, limits, std::nullopt);
  EXPECT_EQ(parser.FeedHeader(LengthPrefix(1ull << 40)).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(parser.position(), 8u);
}

TEST(ShardParser, DeclaredSizeMustMatchTheHeader) {
  TestShard s = MakeShard({{"a", DType::kF32, {2}}, {"b", DType::kF16, {2}}});
  const uint64_t header = s.file.size() - 12 - 8;
  // Bytes beyond the data section (declared larger than the header describes).
  Result r = ParseWith(s.file + "xyz", Fixed(7), s.file.size() + 3);
  ASSERT_EQ(r.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status.message()),
              HasSubstr(absl::StrCat("shard 'shard-7.safetensors': the header describes a file of ", s.file.size(),
                                     " bytes (8 + header ", header, " + data 12) but the file is ",
                                     s.file.size() + 3, " bytes")));
  EXPECT_TRUE(r.trace.empty());
  // Offsets beyond the data: the file is shorter than its valid header says, so it
  // was cut off (DATA_LOSS), reported as soon as the header is complete.
  r = ParseWith(std::string_view(s.file).substr(0, s.file.size() - 1), Fixed(7), s.file.size() - 1);
  ASSERT_EQ(r.status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(r.status.message()),
              HasSubstr(absl::StrCat("the header describes a file of ", s.file.size(), " bytes (8 + header ", header,
                                     " + data 12) but the file is ", s.file.size() - 1, " bytes")));
}

TEST(ShardParser, BytesBeyondTheDataSection) {
  TestShard s = MakeShard({{"a", DType::kF32, {2}}, {"b", DType::kF16, {2}}});
  const std::string file = s.file + "extra";
  for (auto& [label, sizes] : Chunkings(file.size())) {
    Result r = ParseWith(file, sizes, std::nullopt);
    ASSERT_EQ(r.status.code(), absl::StatusCode::kInvalidArgument) << label;
    EXPECT_THAT(std::string(r.status.message()),
                HasSubstr(absl::StrCat("shard 'shard-7.safetensors': ")));
    EXPECT_THAT(std::string(r.status.message()),
                HasSubstr(absl::StrCat(" bytes after the last tensor at file byte offset ", s.file.size(),
                                       " (the header declares 12 data bytes)")));
  }
  // None of a chunk that holds extra bytes is delivered, and the error is sticky.
  ShardParser parser(kShard, {}, std::nullopt);
  RecordingSink sink(&parser);
  absl::StatusOr<size_t> used = parser.FeedHeader(file);
  ASSERT_TRUE(used.ok());
  std::string_view data = std::string_view(file).substr(*used);
  ASSERT_TRUE(parser.FeedData(data.substr(0, 3), sink).ok());
  absl::Status st = parser.FeedData(data.substr(3), sink);
  ASSERT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("5 bytes after the last tensor"));
  EXPECT_EQ(sink.byte_calls, 1u);
  EXPECT_TRUE(sink.trace.empty());
  EXPECT_EQ(parser.position(), *used + 3);
  EXPECT_EQ(parser.FeedData("", sink), st);
  EXPECT_EQ(parser.Finish(sink), st);
}

TEST(ShardParser, HeaderErrorsComeThrough) {
  // Each case is also covered by header_test; here they come through the stream.
  struct Case {
    std::string json;
    std::string message;
  };
  std::vector<Case> cases = {
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
       "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
       "duplicate tensor name 'a'"},
      {"{\"a\":{\"dtype\":\"Q8\",\"shape\":[1],\"data_offsets\":[0,1]}}", "tensor 'a': dtype 'Q8' is not a safetensors dtype"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", "tensor 'a': shape [2] of dtype F32 needs 8"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
       "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}",
       "tensor 'b': data_offsets [2, 6] overlap the previous tensor 'a'"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
       "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[5,9]}}",
       "tensor 'b': data_offsets [5, 9] leave a gap of 1 bytes"},
      {"{\"\xC3\x28\":{}}", "header is not valid UTF-8: byte 0xC3 at file byte offset 10"},
      {"[]", "header does not start with '{'"},
      {"{\"__metadata__\":{\"k\":5}}", "__metadata__ value of key 'k' must be a string"},
      {"{\"a\":", "header is not valid JSON at file byte offset"},
      {std::string("{}\0\0\0\0\0\0", 8), "header is not valid JSON at file byte offset 10: NUL byte"},
  };
  for (const Case& c : cases) {
    std::string file = Shard(c.json, std::string(16, 'd'));
    for (auto& [label, sizes] : Chunkings(file.size())) {
      for (std::optional<uint64_t> declared : {std::optional<uint64_t>(), std::optional<uint64_t>(file.size())}) {
        Result r = ParseWith(file, sizes, declared);
        ASSERT_EQ(r.status.code(), absl::StatusCode::kInvalidArgument) << c.json << " " << label << r.status;
        EXPECT_THAT(std::string(r.status.message()),
                    AllOf(HasSubstr("shard 'shard-7.safetensors': "), HasSubstr(c.message)))
            << label;
        EXPECT_TRUE(r.trace.empty());
      }
    }
  }
}

TEST(ShardParser, TooManyTensorsAndLongNames) {
  ParseLimits limits;
  limits.max_tensors = 2;
  limits.max_name_bytes = 5;
  TestShard ok = MakeShard({{"aaaaa", DType::kF32, {1}}, {"b", DType::kF32, {1}}});
  EXPECT_TRUE(ParseWith(ok.file, Fixed(3), std::nullopt, limits).status.ok());
  TestShard three = MakeShard({{"a", DType::kF32, {1}}, {"b", DType::kF32, {1}}, {"c", DType::kF32, {1}}});
  Result r = ParseWith(three.file, Fixed(3), std::nullopt, limits);
  ASSERT_EQ(r.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status.message()), HasSubstr("more than 2 tensors (at tensor 'c')"));
  TestShard long_name = MakeShard({{"abcdef", DType::kF32, {1}}});
  r = ParseWith(long_name.file, Fixed(3), std::nullopt, limits);
  ASSERT_EQ(r.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status.message()), HasSubstr("tensor name 'abcdef' is 6 bytes, more than the limit of 5"));
}

TEST(ShardParser, CallOrderErrors) {
  TestShard s = MakeShard({{"a", DType::kF32, {1}}});
  ShardParser parser(kShard, {}, std::nullopt);
  RecordingSink sink(&parser);
  EXPECT_EQ(parser.FeedData("x", sink).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(parser.FeedHeader(s.file).ok());
  ASSERT_TRUE(parser.FeedData(std::string_view(s.file).substr(s.file.size() - 4), sink).ok());
  ASSERT_TRUE(parser.Finish(sink).ok());
  EXPECT_EQ(parser.Finish(sink).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(parser.FeedData("", sink).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(sink.trace, (std::vector<std::string>{absl::StrCat("T0:a=", s.data[0])}));

  ShardParser early(kShard, {}, std::nullopt);
  ASSERT_TRUE(early.FeedHeader("abc").ok());
  ASSERT_EQ(early.Finish(sink).code(), absl::StatusCode::kDataLoss);
  // A failed stream stays failed.
  EXPECT_EQ(early.FeedHeader("defgh").status().code(), absl::StatusCode::kDataLoss);
}

TEST(ShardParser, SinkErrorsStopTheStream) {
  TestShard s = MakeShard({{"a", DType::kF32, {2}}, {"b", DType::kF32, {2}}});
  ShardParser parser(kShard, {}, std::nullopt);
  RecordingSink sink(&parser);
  sink.fail_bytes_at = 1;
  absl::Status st = FeedAll(parser, s.file, Fixed(5), sink);
  EXPECT_EQ(st, absl::ResourceExhaustedError("sink full"));
  EXPECT_EQ(parser.FeedData("", sink), st);
  EXPECT_EQ(parser.Finish(sink), st);
  EXPECT_EQ(sink.trace.size(), 1u);
}

}  // namespace
}  // namespace weightd::safetensors
