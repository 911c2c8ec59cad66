#include "services/safetensors/header.h"

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace weightd::safetensors {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr std::string_view kShard = "model-00001.safetensors";

absl::StatusOr<ShardHeader> Parse(std::string_view json, const ParseLimits& limits = {}) {
  return ParseShardHeaderJson(kShard, json, limits);
}

// The status of parsing `json`, which must fail with INVALID_ARGUMENT naming the shard.
std::string ErrorOf(std::string_view json, const ParseLimits& limits = {}) {
  absl::StatusOr<ShardHeader> h = Parse(json, limits);
  EXPECT_FALSE(h.ok()) << json;
  if (h.ok()) return "";
  EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument) << h.status();
  EXPECT_THAT(std::string(h.status().message()), HasSubstr("shard 'model-00001.safetensors': "));
  return std::string(h.status().message());
}

std::string Entry(const std::string& name, const std::string& dtype, const std::string& shape, uint64_t begin,
                  uint64_t end) {
  return absl::StrCat("\"", name, "\":{\"dtype\":\"", dtype, "\",\"shape\":", shape,
                      ",\"data_offsets\":[", begin, ",", end, "]}");
}

// File byte offset of data byte `relative` for a header of `json`.
std::string DataOffset(std::string_view json, uint64_t relative) {
  return absl::StrCat("file byte offset ", 8 + json.size() + relative);
}

TEST(ParseShardHeaderJson, ValidHeaderSortedByOffsets) {
  std::string json = absl::StrCat("{\"__metadata__\":{\"format\":\"pt\",\"b\":\"x\"},",
                                  Entry("w2", "F16", "[2,3]", 16, 28), ",", Entry("w1", "BF16", "[4,2]", 0, 16),
                                  ",", Entry("s", "F32", "[]", 28, 32), ",", Entry("q", "F8_E4M3", "[5]", 32, 37),
                                  "}   ");
  absl::StatusOr<ShardHeader> h = Parse(json);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->header_size, json.size());
  EXPECT_EQ(h->data_start(), 8 + json.size());
  EXPECT_EQ(h->data_size, 37u);
  EXPECT_EQ(h->file_size(), 8 + json.size() + 37);
  ASSERT_EQ(h->tensors.size(), 4u);
  EXPECT_EQ(h->tensors[0].name, "w1");
  EXPECT_EQ(h->tensors[0].dtype, kernels::DType::kBF16);
  EXPECT_EQ(h->tensors[0].shape, (std::vector<int64_t>{4, 2}));
  EXPECT_EQ(h->tensors[0].num_elements(), 8u);
  EXPECT_EQ(h->tensors[1].name, "w2");
  EXPECT_EQ(h->tensors[1].dtype, kernels::DType::kF16);
  EXPECT_EQ(h->tensors[1].begin, 16u);
  EXPECT_EQ(h->tensors[1].end, 28u);
  EXPECT_EQ(h->tensors[1].size(), 12u);
  EXPECT_EQ(h->tensors[2].name, "s");
  EXPECT_TRUE(h->tensors[2].shape.empty());
  EXPECT_EQ(h->tensors[2].num_elements(), 1u);
  EXPECT_EQ(h->tensors[3].dtype, kernels::DType::kF8E4M3);
  ASSERT_EQ(h->metadata.size(), 2u);
  EXPECT_EQ(h->metadata[0], (std::pair<std::string, std::string>{"format", "pt"}));
  EXPECT_EQ(h->metadata[1], (std::pair<std::string, std::string>{"b", "x"}));
}

TEST(ParseShardHeaderJson, EmptyObjectIsAnEmptyShard) {
  absl::StatusOr<ShardHeader> h = Parse("{}");
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_TRUE(h->tensors.empty());
  EXPECT_EQ(h->data_size, 0u);
  EXPECT_EQ(h->file_size(), 10u);
  h = Parse("{\"__metadata__\":{}}");
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_TRUE(h->metadata.empty());
}

TEST(ParseShardHeaderJson, ZeroSizeTensors) {
  // Zero-size tensors sort before a tensor that starts where they do.
  std::string json = absl::StrCat("{", Entry("a", "F32", "[2]", 0, 8), ",", Entry("b", "F32", "[2]", 8, 16), ",",
                                  Entry("z1", "F32", "[0,4]", 8, 8), ",", Entry("z0", "BF16", "[3,0]", 0, 0),
                                  ",", Entry("z2", "F16", "[0]", 16, 16), "}");
  absl::StatusOr<ShardHeader> h = Parse(json);
  ASSERT_TRUE(h.ok()) << h.status();
  std::vector<std::string> names;
  for (const TensorHeader& t : h->tensors) names.push_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{"z0", "a", "z1", "b", "z2"}));
  EXPECT_EQ(h->tensors[0].num_elements(), 0u);
  EXPECT_EQ(h->data_size, 16u);
  // A huge dimension next to a zero one is still zero bytes; the non-zero
  // dimensions must still multiply within 63 bits (code slicing the tensor multiplies them).
  EXPECT_TRUE(Parse(absl::StrCat("{", Entry("z", "F8_E4M3", "[0,9223372036854775807]", 0, 0), "}")).ok());
  EXPECT_THAT(ErrorOf(absl::StrCat("{", Entry("z", "F32", "[0,4294967296,4294967296]", 0, 0), "}")),
              HasSubstr("tensor 'z': shape [0, 4294967296, 4294967296] has more elements than fit in 63 bits"));
  // Only zero-size tensors.
  h = Parse(absl::StrCat("{", Entry("z", "F32", "[0]", 0, 0), "}"));
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->data_size, 0u);
}

TEST(ParseShardHeaderJson, HeaderNotAnObject) {
  EXPECT_THAT(ErrorOf(""), HasSubstr("header does not start with '{' (file byte offset 8)"));
  EXPECT_THAT(ErrorOf("[1,2]"), HasSubstr("header does not start with '{' (file byte offset 8)"));
  EXPECT_THAT(ErrorOf(" {}"), HasSubstr("header does not start with '{' (file byte offset 8)"));
  EXPECT_THAT(ErrorOf("\"x\""), HasSubstr("header does not start with '{'"));
  EXPECT_THAT(ErrorOf("null"), HasSubstr("header does not start with '{'"));
}

TEST(ParseShardHeaderJson, InvalidJson) {
  // The offset is that of the byte where the parse failed, counted in the file.
  EXPECT_THAT(ErrorOf("{\"a\" 1}"), HasSubstr("header is not valid JSON at file byte offset 13"));
  EXPECT_THAT(ErrorOf("{\"a\":"), HasSubstr("header is not valid JSON at file byte offset"));
  EXPECT_THAT(ErrorOf("{"), HasSubstr("header is not valid JSON at file byte offset"));
  EXPECT_THAT(ErrorOf("{}}"), HasSubstr("header is not valid JSON at file byte offset 10"));
  EXPECT_THAT(ErrorOf("{} x"), HasSubstr("header is not valid JSON at file byte offset 11"));
  // nlohmann's lexer reads a NUL byte as the end of input; the header must not.
  EXPECT_THAT(ErrorOf(std::string("{}\0", 3)), HasSubstr("header is not valid JSON at file byte offset 10: NUL byte"));
  EXPECT_THAT(ErrorOf(std::string("{}  \0junk", 9)),
              HasSubstr("header is not valid JSON at file byte offset 12: NUL byte"));
  EXPECT_THAT(ErrorOf(std::string("{\"a\0\":1}", 9)), HasSubstr("header is not valid JSON at file byte offset 11"));
  std::string trailing_comma = absl::StrCat("{", Entry("a", "F32", "[1]", 0, 4), ",}");
  EXPECT_THAT(ErrorOf(trailing_comma), HasSubstr("header is not valid JSON at file byte offset"));
  // Comments are not JSON.
  EXPECT_THAT(ErrorOf("{/* c */}"), HasSubstr("header is not valid JSON at file byte offset 9"));
  // A lone surrogate escape is not a string.
  EXPECT_THAT(ErrorOf("{\"\\ud800\":1}"), HasSubstr("header is not valid JSON"));
}

TEST(ParseShardHeaderJson, TrailingSpacesAreAllowed) {
  EXPECT_TRUE(Parse("{}      ").ok());
  EXPECT_TRUE(Parse("{}\n\t\r ").ok());
}

TEST(ParseShardHeaderJson, NonUtf8Name) {
  std::string json = absl::StrCat("{", Entry("ab\xFF", "F32", "[1]", 0, 4), "}");
  // '{' '"' 'a' 'b' then 0xFF at header byte 4: file byte 12.
  EXPECT_THAT(ErrorOf(json), HasSubstr("header is not valid UTF-8: byte 0xFF at file byte offset 12"));
  // Overlong '/' (C0 AF), CESU surrogate (ED A0 80), above U+10FFFF (F4 90 80 80), truncated.
  for (std::string bad : {"\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xE2\x82", "\x80"}) {
    std::string j = absl::StrCat("{", Entry(absl::StrCat("n", bad), "F32", "[1]", 0, 4), "}");
    EXPECT_THAT(ErrorOf(j), HasSubstr("header is not valid UTF-8: byte 0x")) << absl::CEscape(bad);
    EXPECT_THAT(ErrorOf(j), HasSubstr("at file byte offset 11")) << absl::CEscape(bad);
  }
  // Non-UTF-8 in a metadata value too.
  EXPECT_THAT(ErrorOf("{\"__metadata__\":{\"k\":\"\xFE\"}}"),
              HasSubstr("byte 0xFE at file byte offset 30"));
}

TEST(ParseShardHeaderJson, Utf8NamesAreKept) {
  std::string name = "caf\xC3\xA9.\xE2\x82\xAC.\xF0\x9F\x98\x80";
  absl::StatusOr<ShardHeader> h = Parse(absl::StrCat("{", Entry(name, "F32", "[1]", 0, 4), "}"));
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->tensors[0].name, name);
  // Escapes decode; the decoded name is what is kept.
  h = Parse(absl::StrCat("{", Entry("a\\u00e9\\\"\\n", "F32", "[1]", 0, 4), "}"));
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->tensors[0].name, "a\xC3\xA9\"\n");
}

TEST(ParseShardHeaderJson, DuplicateNamesAreRejected) {
  std::string json = absl::StrCat("{", Entry("w", "F32", "[1]", 0, 4), ",", Entry("w", "F32", "[1]", 4, 8), "}");
  EXPECT_THAT(ErrorOf(json), HasSubstr("duplicate tensor name 'w'"));
  // Same name through an escape.
  json = absl::StrCat("{", Entry("w", "F32", "[1]", 0, 4), ",", Entry("\\u0077", "F32", "[1]", 4, 8), "}");
  EXPECT_THAT(ErrorOf(json), HasSubstr("duplicate tensor name 'w'"));
  EXPECT_THAT(ErrorOf("{\"__metadata__\":{},\"__metadata__\":{}}"), HasSubstr("duplicate key '__metadata__'"));
  EXPECT_THAT(ErrorOf("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}"), HasSubstr("duplicate __metadata__ key 'k'"));
  json = absl::StrCat("{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}");
  EXPECT_THAT(ErrorOf(json), HasSubstr("tensor 'w': duplicate field 'dtype'"));
}

TEST(ParseShardHeaderJson, MetadataValuesMustBeStrings) {
  EXPECT_THAT(ErrorOf("{\"__metadata__\":{\"k\":1}}"),
              HasSubstr("__metadata__ value of key 'k' must be a string, got a number"));
  EXPECT_THAT(ErrorOf("{\"__metadata__\":{\"k\":-1.5}}"),
              HasSubstr("__metadata__ value of key 'k' must be a string, got a number"));
  EXPECT_THAT(ErrorOf("{\"__metadata__\":{\"k\":null}}"),
              HasSubstr("__metadata__ value of key 'k' must be a string, got null"));
  EXPECT_THAT(ErrorOf("{\"__metadata__\":{\"k\":true}}"),
              HasSubstr("__metadata__ value of key 'k' must be a string, got a boolean"));
  EXPECT_THAT(ErrorOf("{\"__metadata__\":{\"k\":{}}}"),
              HasSubstr("__metadata__ value of key 'k' must be a string, got an object"));
  EXPECT_THAT(ErrorOf("{\"__metadata__\":{\"k\":[\"a\"]}}"),
              HasSubstr("__metadata__ value of key 'k' must be a string, got an array"));
  EXPECT_THAT(ErrorOf("{\"__metadata__\":\"x\"}"), HasSubstr("__metadata__ must be a JSON object of strings, got a string"));
  EXPECT_THAT(ErrorOf("{\"__metadata__\":[]}"), HasSubstr("__metadata__ must be a JSON object of strings, got an array"));
}

TEST(ParseShardHeaderJson, UnknownDtype) {
  for (std::string dtype : {"Q7", "f32", "F4", "bf16", ""}) {
    EXPECT_THAT(ErrorOf(absl::StrCat("{", Entry("w", dtype, "[1]", 0, 4), "}")),
                HasSubstr(absl::StrCat("tensor 'w': dtype '", dtype, "' is not a safetensors dtype")));
  }
  EXPECT_THAT(ErrorOf("{\"w\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}"),
              HasSubstr("tensor 'w': dtype must be a string, got a number"));
}

TEST(ParseShardHeaderJson, EverySafetensorsDtypeParsesWithItsSize) {
  // Real checkpoints carry integer buffers (BERT's I64 position_ids) beside the weights.
  const std::pair<const char*, uint64_t> dtypes[] = {{"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1}, {"U64", 8},
                                                     {"U32", 4}, {"U16", 2}, {"U8", 1}, {"BOOL", 1}, {"F64", 8},
                                                     {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"BF16", 2}};
  for (const auto& [name, size] : dtypes) {
    absl::StatusOr<ShardHeader> h = Parse(absl::StrCat("{", Entry("w", name, "[1,3]", 0, 3 * size), "}"));
    ASSERT_TRUE(h.ok()) << name << ": " << h.status();
    EXPECT_EQ(kernels::DTypeName(h->tensors[0].dtype), std::string(name));
    EXPECT_EQ(h->tensors[0].size(), 3 * size) << name;
  }
}

TEST(ParseShardHeaderJson, ShapeSizeMismatch) {
  EXPECT_THAT(ErrorOf(absl::StrCat("{", Entry("w", "F16", "[2,3]", 0, 10), "}")),
              HasSubstr("tensor 'w': shape [2, 3] of dtype F16 needs 12 bytes but data_offsets [0, 10] span 10"));
  EXPECT_THAT(ErrorOf(absl::StrCat("{", Entry("s", "F32", "[]", 0, 0), "}")),
              HasSubstr("tensor 's': shape [] of dtype F32 needs 4 bytes but data_offsets [0, 0] span 0"));
  EXPECT_THAT(ErrorOf(absl::StrCat("{", Entry("z", "F32", "[0]", 0, 4), "}")),
              HasSubstr("tensor 'z': shape [0] of dtype F32 needs 0 bytes but data_offsets [0, 4] span 4"));
}

TEST(ParseShardHeaderJson, ShapeValues) {
  EXPECT_THAT(ErrorOf(absl::StrCat("{", Entry("w", "F32", "[-1]", 0, 4), "}")),
              HasSubstr("tensor 'w': shape[0] must be a non-negative integer, got -1"));
  EXPECT_THAT(ErrorOf(absl::StrCat("{", Entry("w", "F32", "[1,2.0]", 0, 8), "}")),
              HasSubstr("tensor 'w': shape[1] must be a non-negative integer, got 2.0"));
  EXPECT_THAT(ErrorOf(absl::StrCat("{", Entry("w", "F32", "[[1]]", 0, 4), "}")),
              HasSubstr("tensor 'w': shape[0] must be a non-negative integer, got an array"));
  EXPECT_THAT(ErrorOf(absl::StrCat("{", Entry("w", "F32", "[\"1\"]", 0, 4), "}")),
              HasSubstr("tensor 'w': shape[0] must be a non-negative integer, got a string"));
  EXPECT_THAT(ErrorOf(absl::StrCat("{", Entry("w", "F32", "4", 0, 16), "}")),
              HasSubstr("tensor 'w': shape must be an array of non-negative integers, got a number"));
  EXPECT_THAT(ErrorOf(absl::StrCat("{", Entry("w", "F32", "[9223372036854775808]", 0, 4), "}")),
              HasSubstr("tensor 'w': shape[0] is 9223372036854775808, larger than any dimension can be"));
  EXPECT_THAT(ErrorOf(absl::StrCat("{", Entry("w", "F32", "[4294967296,4294967296]", 0, 4), "}")),
              HasSubstr("tensor 'w': shape [4294967296, 4294967296] has more elements than fit in 63 bits"));
  EXPECT_THAT(ErrorOf(absl::StrCat("{", Entry("w", "F32", "[4611686018427387904]", 0, 4), "}")),
              HasSubstr("tensor 'w': shape [4611686018427387904] of dtype F32 has more bytes than fit in 64 bits"));
  ParseLimits limits;
  limits.max_rank = 2;
  EXPECT_TRUE(Parse(absl::StrCat("{", Entry("w", "F32", "[1,1]", 0, 4), "}"), limits).ok());
  EXPECT_THAT(ErrorOf(absl::StrCat("{", Entry("w", "F32", "[1,1,1]", 0, 4), "}"), limits),
              HasSubstr("tensor 'w': shape has more than 2 dimensions"));
}

TEST(ParseShardHeaderJson, EntryStructure) {
  EXPECT_THAT(ErrorOf("{\"w\":[]}"), HasSubstr("tensor 'w': entry must be a JSON object, got an array"));
  EXPECT_THAT(ErrorOf("{\"w\":1}"), HasSubstr("tensor 'w': entry must be a JSON object, got a number"));
  EXPECT_THAT(ErrorOf("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}"), HasSubstr("tensor 'w': missing field 'dtype'"));
  EXPECT_THAT(ErrorOf("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}"),
              HasSubstr("tensor 'w': missing field 'shape'"));
  EXPECT_THAT(ErrorOf("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}"), HasSubstr("tensor 'w': missing field 'data_offsets'"));
  EXPECT_THAT(ErrorOf("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}"),
              HasSubstr("tensor 'w': unexpected field 'x'"));
  EXPECT_THAT(ErrorOf("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}"),
              HasSubstr("tensor 'w': data_offsets must have exactly 2 entries, got 1"));
  EXPECT_THAT(ErrorOf("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}"),
              HasSubstr("tensor 'w': data_offsets must have exactly 2 entries, got more"));
  EXPECT_THAT(ErrorOf("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,-4]}}"),
              HasSubstr("tensor 'w': data_offsets[1] must be a non-negative integer, got -4"));
  EXPECT_THAT(ErrorOf("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{}}}"),
              HasSubstr("tensor 'w': data_offsets must be an array of two non-negative integers, got an object"));
  EXPECT_THAT(ErrorOf("{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}"),
              HasSubstr("a tensor name is empty"));
}

TEST(ParseShardHeaderJson, OffsetsMustTileTheDataSection) {
  // Begin after end.
  std::string json = absl::StrCat("{", Entry("w", "F32", "[1]", 8, 4), "}");
  EXPECT_THAT(ErrorOf(json), AllOf(HasSubstr("tensor 'w': data_offsets [8, 4] have begin > end"),
                                   HasSubstr(DataOffset(json, 8))));
  // Not starting at 0.
  json = absl::StrCat("{", Entry("w", "F32", "[1]", 4, 8), "}");
  EXPECT_THAT(ErrorOf(json), AllOf(HasSubstr("tensor 'w': data_offsets [4, 8] do not start at 0"),
                                   HasSubstr(DataOffset(json, 4))));
  // A gap between two tensors.
  json = absl::StrCat("{", Entry("a", "F32", "[1]", 0, 4), ",", Entry("b", "F32", "[1]", 6, 10), "}");
  EXPECT_THAT(ErrorOf(json),
              AllOf(HasSubstr("tensor 'b': data_offsets [6, 10] leave a gap of 2 bytes after the previous tensor 'a' "
                              "ending at 4"),
                    HasSubstr(DataOffset(json, 4))));
  // Overlap.
  json = absl::StrCat("{", Entry("a", "F32", "[2]", 0, 8), ",", Entry("b", "F32", "[2]", 4, 12), "}");
  EXPECT_THAT(ErrorOf(json),
              AllOf(HasSubstr("tensor 'b': data_offsets [4, 12] overlap the previous tensor 'a' ending at 8"),
                    HasSubstr(DataOffset(json, 4))));
  // Exactly the same range twice is an overlap too.
  json = absl::StrCat("{", Entry("a", "F32", "[2]", 0, 8), ",", Entry("b", "F32", "[2]", 0, 8), "}");
  EXPECT_THAT(ErrorOf(json), HasSubstr("overlap the previous tensor 'a' ending at 8"));
  // A zero-size tensor inside another one.
  json = absl::StrCat("{", Entry("a", "F32", "[2]", 0, 8), ",", Entry("z", "F32", "[0]", 4, 4), "}");
  EXPECT_THAT(ErrorOf(json), HasSubstr("tensor 'z': data_offsets [4, 4] overlap the previous tensor 'a' ending at 8"));
  // Offsets near 2^64 print exactly instead of wrapping.
  json = absl::StrCat("{", Entry("a", "F32", "[1]", 0, 4), ",",
                      Entry("b", "F8_E4M3", "[1]", 18446744073709551614ull, 18446744073709551615ull), "}");
  EXPECT_THAT(ErrorOf(json), AllOf(HasSubstr("leave a gap of 18446744073709551610 bytes"), HasSubstr(DataOffset(json, 4))));
  json = absl::StrCat("{", Entry("a", "F8_E4M3", "[18446744073709551615]", 0, 18446744073709551615ull), "}");
  EXPECT_THAT(ErrorOf(json), HasSubstr("larger than any dimension can be"));
  json = absl::StrCat("{", Entry("a", "F8_E4M3", "[9223372036854775807]", 0, 9223372036854775807ull), ",",
                      Entry("b", "F8_E4M3", "[9223372036854775807]", 9223372036854775807ull,
                            18446744073709551614ull),
                      "}");
  EXPECT_THAT(ErrorOf(json), HasSubstr("makes the file larger than 2^64 bytes"));
}

TEST(ParseShardHeaderJson, Limits) {
  ParseLimits limits;
  limits.max_header_bytes = 16;
  EXPECT_TRUE(Parse("{}              ", limits).ok());
  EXPECT_THAT(ErrorOf("{}               ", limits), HasSubstr("header length 17 exceeds the limit of 16 bytes"));

  limits = ParseLimits();
  limits.max_tensors = 2;
  std::string two = absl::StrCat("{", Entry("a", "F32", "[1]", 0, 4), ",", Entry("b", "F32", "[1]", 4, 8));
  EXPECT_TRUE(Parse(absl::StrCat(two, "}"), limits).ok());
  EXPECT_THAT(ErrorOf(absl::StrCat(two, ",", Entry("c", "F32", "[1]", 8, 12), "}"), limits),
              HasSubstr("more than 2 tensors (at tensor 'c')"));
  // __metadata__ is not a tensor.
  EXPECT_TRUE(Parse(absl::StrCat("{\"__metadata__\":{},", two.substr(1), "}"), limits).ok());

  limits = ParseLimits();
  limits.max_name_bytes = 4;
  EXPECT_TRUE(Parse(absl::StrCat("{", Entry("abcd", "F32", "[1]", 0, 4), "}"), limits).ok());
  EXPECT_THAT(ErrorOf(absl::StrCat("{", Entry("abcde", "F32", "[1]", 0, 4), "}"), limits),
              HasSubstr("tensor name 'abcde' is 5 bytes, more than the limit of 4"));
  // A very long name is quoted only in part, cut on a UTF-8 boundary.
  limits = ParseLimits();
  std::string long_name = std::string(63, 'x') + "\xC3\xA9" + std::string(2000, 'y');
  std::string message = ErrorOf(absl::StrCat("{", Entry(long_name, "F32", "[1]", 0, 4), "}"), limits);
  EXPECT_THAT(message, HasSubstr(absl::StrCat("tensor name '", std::string(63, 'x'), "...' is 2065 bytes, more than "
                                              "the limit of 1024")));
}

TEST(FindInvalidUtf8, Cases) {
  EXPECT_EQ(FindInvalidUtf8(""), std::nullopt);
  EXPECT_EQ(FindInvalidUtf8("plain ascii \x7F"), std::nullopt);
  EXPECT_EQ(FindInvalidUtf8("\xC2\x80\xDF\xBF\xE0\xA0\x80\xEF\xBF\xBF\xF0\x90\x80\x80\xF4\x8F\xBF\xBF"),
            std::nullopt);
  EXPECT_EQ(FindInvalidUtf8(std::string_view("a\0b", 3)), std::nullopt);
  EXPECT_EQ(FindInvalidUtf8("ab\x80"), 2u);           // lone continuation
  EXPECT_EQ(FindInvalidUtf8("a\xC0\x80"), 1u);        // overlong NUL
  EXPECT_EQ(FindInvalidUtf8("a\xC1\xBF"), 1u);        // overlong
  EXPECT_EQ(FindInvalidUtf8("\xE0\x9F\xBF"), 0u);     // overlong 3-byte
  EXPECT_EQ(FindInvalidUtf8("\xF0\x8F\xBF\xBF"), 0u); // overlong 4-byte
  EXPECT_EQ(FindInvalidUtf8("x\xED\xA0\x80"), 1u);    // U+D800
  EXPECT_EQ(FindInvalidUtf8("x\xED\xBF\xBF"), 1u);    // U+DFFF
  EXPECT_EQ(FindInvalidUtf8("\xED\x9F\xBF"), std::nullopt);  // U+D7FF
  EXPECT_EQ(FindInvalidUtf8("\xF4\x90\x80\x80"), 0u); // U+110000
  EXPECT_EQ(FindInvalidUtf8("\xF5\x80\x80\x80"), 0u);
  EXPECT_EQ(FindInvalidUtf8("\xF8\x88\x80\x80\x80"), 0u);
  EXPECT_EQ(FindInvalidUtf8("\xFF"), 0u);
  EXPECT_EQ(FindInvalidUtf8("ok\xE2\x82"), 2u);       // truncated at the end
  EXPECT_EQ(FindInvalidUtf8("ok\xE2\x82x"), 2u);      // bad continuation
  EXPECT_EQ(FindInvalidUtf8("\xC3\xA9\xC3"), 2u);
}

}  // namespace
}  // namespace weightd::safetensors
