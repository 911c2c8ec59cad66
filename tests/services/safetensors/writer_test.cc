#include "services/safetensors/writer.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/safetensors/header.h"
#include "services/safetensors/parser.h"

namespace weightd::safetensors {
namespace {

using ::testing::HasSubstr;
using kernels::DType;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = ::testing::TempDir() + "writer_test.XXXXXX";
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    for (const std::string& f : files_) ::unlink(f.c_str());
    ::rmdir(path_.c_str());
  }
  std::string File(const std::string& name) {
    files_.push_back(absl::StrCat(path_, "/", name));
    return files_.back();
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::vector<std::string> files_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Pattern(size_t n, uint8_t seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(seed ^ (i * 13));
  return s;
}

class CollectingSink : public TensorSink {
 public:
  absl::Status OnTensorBytes(size_t index, uint64_t offset, std::string_view bytes) override {
    if (index >= tensors.size()) tensors.resize(index + 1);
    EXPECT_EQ(offset, tensors[index].size());
    tensors[index].append(bytes.data(), bytes.size());
    return absl::OkStatus();
  }
  absl::Status OnTensorComplete(size_t index) override {
    if (index >= tensors.size()) tensors.resize(index + 1);
    EXPECT_EQ(index, completed.size());
    completed.push_back(index);
    return absl::OkStatus();
  }
  std::vector<std::string> tensors;
  std::vector<size_t> completed;
};

TEST(BuildHeaderJson, ExactText) {
  std::string json = BuildHeaderJson({{"a", DType::kF32, {2, 3}}, {"b.\"q\\", DType::kBF16, {}}},
                                     {{"format", "pt"}, {"x\n", "y"}});
  EXPECT_EQ(json,
            "{\"__metadata__\":{\"format\":\"pt\",\"x\\u000a\":\"y\"},"
            "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
            "\"b.\\\"q\\\\\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[24,26]}}     ");
  EXPECT_EQ(json.size() % 8, 0u);
  EXPECT_EQ(BuildHeaderJson({}, {}), "{}      ");
  EXPECT_EQ(BuildHeaderJson({{"z", DType::kF8E4M3, {0}}}, {}),
            "{\"z\":{\"dtype\":\"F8_E4M3\",\"shape\":[0],\"data_offsets\":[0,0]}}      ");
}

TEST(BuildHeaderJson, PaddingToEveryResidue) {
  for (size_t len = 1; len <= 16; ++len) {
    std::string json = BuildHeaderJson({{std::string(len, 'n'), DType::kF32, {1}}}, {});
    EXPECT_EQ(json.size() % 8, 0u) << len;
    EXPECT_TRUE(ParseShardHeaderJson("s", json, {}).ok());
  }
}

TEST(SafetensorsWriter, RoundTripThroughTheParser) {
  TempDir dir;
  std::string path = dir.File("model.safetensors");
  std::vector<TensorSpec> specs = {{"model.embed", DType::kBF16, {11, 3}},
                                   {"zero", DType::kF32, {0, 5}},
                                   {"scale", DType::kF32, {}},
                                   {"w.\xC3\xA9", DType::kF16, {4, 4}},
                                   {"fp8", DType::kF8E4M3, {17}},
                                   {"tail.zero", DType::kF16, {0}}};
  std::vector<std::pair<std::string, std::string>> metadata = {{"format", "pt"}, {"note", "tab\there"}};
  std::vector<std::string> data = {Pattern(66, 1), "", Pattern(4, 2), Pattern(32, 3), Pattern(17, 4), ""};
  absl::StatusOr<std::unique_ptr<SafetensorsWriter>> w = SafetensorsWriter::Create(path, specs, metadata);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->data_size(), 119u);
  std::string all;
  for (const std::string& d : data) all += d;
  // Odd-sized appends that straddle tensors.
  for (size_t i = 0; i < all.size(); i += 5) ASSERT_TRUE((*w)->Append(std::string_view(all).substr(i, 5)).ok());
  EXPECT_EQ((*w)->appended(), 119u);
  ASSERT_TRUE((*w)->Close().ok());

  std::string file = ReadFile(path);
  std::string json = BuildHeaderJson(specs, metadata);
  ASSERT_EQ(file.size(), 8 + json.size() + all.size());
  for (int i = 0; i < 8; ++i) EXPECT_EQ(static_cast<uint8_t>(file[i]), (json.size() >> (8 * i)) & 0xFF);
  EXPECT_EQ(file.substr(8, json.size()), json);
  EXPECT_EQ(file.substr(8 + json.size()), all);
  EXPECT_EQ((8 + json.size()) % 8, 0u);  // data section 8-byte aligned

  for (size_t chunk : {size_t{1}, size_t{7}, file.size()}) {
    ShardParser parser(path, {}, file.size());
    CollectingSink sink;
    std::string_view rest = file;
    while (!rest.empty()) {
      std::string_view c = rest.substr(0, chunk);
      rest.remove_prefix(c.size());
      if (!parser.header_complete()) {
        absl::StatusOr<size_t> used = parser.FeedHeader(c);
        ASSERT_TRUE(used.ok()) << used.status();
        c.remove_prefix(*used);
      }
      if (parser.header_complete()) {
        ASSERT_TRUE(parser.FeedData(c, sink).ok());
      }
    }
    ASSERT_TRUE(parser.Finish(sink).ok());
    const ShardHeader& h = parser.header();
    ASSERT_EQ(h.tensors.size(), specs.size());
    for (size_t i = 0; i < specs.size(); ++i) {
      EXPECT_EQ(h.tensors[i].name, specs[i].name);
      EXPECT_EQ(h.tensors[i].dtype, specs[i].dtype);
      EXPECT_EQ(h.tensors[i].shape, specs[i].shape);
      EXPECT_EQ(sink.tensors[i], data[i]) << i;
    }
    EXPECT_EQ(sink.completed.size(), specs.size());
    EXPECT_EQ(h.metadata, metadata);
  }
}

TEST(SafetensorsWriter, AppendPastTheEnd) {
  TempDir dir;
  std::string path = dir.File("a.safetensors");
  auto w = SafetensorsWriter::Create(path, {{"a", DType::kF32, {2}}});
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE((*w)->Append("12345").ok());
  absl::Status st = (*w)->Append("6789");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("Append of 4 bytes goes past the end of the data section (5 of 8 bytes appended)"));
  EXPECT_EQ((*w)->appended(), 5u);  // nothing of the refused chunk was written
  ASSERT_TRUE((*w)->Append("678").ok());
  EXPECT_TRUE((*w)->Close().ok());
  EXPECT_EQ(ReadFile(path).substr(ReadFile(path).size() - 8), "12345678");
}

TEST(SafetensorsWriter, CloseStates) {
  TempDir dir;
  std::string path = dir.File("short.safetensors");
  auto w = SafetensorsWriter::Create(path, {{"a", DType::kF32, {2}}});
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE((*w)->Append("123").ok());
  absl::Status st = (*w)->Close();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(st.message()), HasSubstr("closed after 3 of 8 data bytes"));
  EXPECT_EQ((*w)->Close().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*w)->Append("x").code(), absl::StatusCode::kFailedPrecondition);
  // The partial file is a truncated shard for the parser.
  std::string file = ReadFile(path);
  ShardParser parser(path, {}, std::nullopt);
  CollectingSink sink;
  absl::StatusOr<size_t> used = parser.FeedHeader(file);
  ASSERT_TRUE(used.ok());
  ASSERT_TRUE(parser.FeedData(std::string_view(file).substr(*used), sink).ok());
  EXPECT_EQ(parser.Finish(sink).code(), absl::StatusCode::kDataLoss);
}

TEST(SafetensorsWriter, EmptyAndZeroSizeFiles) {
  TempDir dir;
  std::string path = dir.File("empty.safetensors");
  auto w = SafetensorsWriter::Create(path, {});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)->data_size(), 0u);
  EXPECT_TRUE((*w)->Append("").ok());
  EXPECT_EQ((*w)->Append("x").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE((*w)->Close().ok());
  EXPECT_EQ(ReadFile(path), std::string("\x08\0\0\0\0\0\0\0{}      ", 16));
}

TEST(SafetensorsWriter, InvalidSpecsAreRefusedBeforeTheFileIsCreated) {
  TempDir dir;
  struct Case {
    std::vector<TensorSpec> specs;
    std::vector<std::pair<std::string, std::string>> metadata;
    std::string message;
  };
  std::vector<Case> cases = {
      {{{"a", DType::kF32, {1}}, {"a", DType::kF32, {1}}}, {}, "duplicate tensor name 'a'"},
      {{{"bad\xFF", DType::kF32, {1}}}, {}, "header is not valid UTF-8: byte 0xFF"},
      {{{"a", DType::kF32, {1}}}, {{"k", "\xC0\x80"}}, "header is not valid UTF-8: byte 0xC0"},
      {{{"", DType::kF32, {1}}}, {}, "a tensor name is empty"},
      {{{"a", DType::kF32, {-1}}}, {}, "shape[0] must be a non-negative integer, got -1"},
      {{{"a", DType::kF32, {1, 1, 1, 1, 1, 1, 1, 1, 1}}}, {}, "shape has more than 8 dimensions"},
      {{{std::string(1025, 'n'), DType::kF32, {1}}}, {}, "is 1025 bytes, more than the limit of 1024"},
      {{{"a", DType::kF32, {1}}}, {{"k", "1"}, {"k", "2"}}, "duplicate __metadata__ key 'k'"},
      {{{"a", DType::kF32, {1LL << 40, 1LL << 40}}}, {}, "has more elements than fit in 63 bits"},
      {{{"__metadata__", DType::kF32, {1}}}, {}, "__metadata__"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    std::string path = dir.File(absl::StrCat("bad", i));
    auto w = SafetensorsWriter::Create(path, cases[i].specs, cases[i].metadata);
    ASSERT_FALSE(w.ok()) << i;
    EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument) << i;
    EXPECT_THAT(std::string(w.status().message()), HasSubstr(cases[i].message)) << i;
    EXPECT_THAT(std::string(w.status().message()), HasSubstr(path)) << i;
    struct stat st;
    EXPECT_NE(::stat(path.c_str(), &st), 0) << i;
  }
}

TEST(SafetensorsWriter, NamesThatNeedEscapingRoundTrip) {
  TempDir dir;
  std::string path = dir.File("esc.safetensors");
  std::string name = std::string("a\"b\\c\x01\x1f\x7f/", 10);
  auto w = SafetensorsWriter::Create(path, {{name, DType::kF8E4M3, {1}}}, {{"\"", "\\"}});
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE((*w)->Append("q").ok());
  ASSERT_TRUE((*w)->Close().ok());
  std::string file = ReadFile(path);
  absl::StatusOr<ShardHeader> h = ParseShardHeaderJson("esc", std::string_view(file).substr(8, file.size() - 9), {});
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->tensors[0].name, name);
  EXPECT_EQ(h->metadata[0].first, "\"");
  EXPECT_EQ(h->metadata[0].second, "\\");
}

TEST(SafetensorsWriter, UncreatablePath) {
  auto w = SafetensorsWriter::Create("/nonexistent-dir-weightd/x.safetensors", {{"a", DType::kF32, {1}}});
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(w.status().message()), HasSubstr("cannot create '/nonexistent-dir-weightd/x.safetensors'"));
}

}  // namespace
}  // namespace weightd::safetensors
