#include "services/safetensors/header.h"

#include <algorithm>
#include <limits>
#include <unordered_set>

#include "absl/numeric/int128.h"
#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace weightd::safetensors {
namespace {

using Json = nlohmann::json;

// Debian's Abseil has its own string_view type; std::string_view does not convert.
absl::string_view AsAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

constexpr std::string_view kMetadataKey = "__metadata__";
// Names in messages are cut to this many bytes when they are the problem (too long).
constexpr size_t kQuotedNameBytes = 64;

// The file byte offset of `relative` bytes past `base`, exact even where a hostile
// header's offsets would overflow 64 bits.
std::string FileOffset(uint64_t base, uint64_t relative) {
  return absl::StrFormat("%d", absl::uint128(base) + relative);
}

std::string Quote(std::string_view text) { return absl::StrCat("'", absl::Utf8SafeCEscape(AsAbsl(text)), "'"); }

std::string QuotePrefix(std::string_view text) {
  if (text.size() <= kQuotedNameBytes) return Quote(text);
  size_t cut = kQuotedNameBytes;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return absl::StrCat("'", absl::Utf8SafeCEscape(AsAbsl(text.substr(0, cut))), "...'");
}

std::string ShapeText(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// nlohmann's message without its "[json.exception...] parse error at line 1, column 7: "
// prefix: the file byte offset we print replaces the line and column.
std::string JsonErrorText(std::string_view what) {
  if (!what.empty() && what.front() == '[') {
    size_t close = what.find("] ");
    if (close != std::string_view::npos) what.remove_prefix(close + 2);
  }
  if (what.starts_with("parse error")) {
    size_t colon = what.find(": ");
    if (colon != std::string_view::npos) what.remove_prefix(colon + 2);
  }
  return std::string(what);
}

enum Field : uint8_t { kDTypeField = 1, kShapeField = 2, kOffsetsField = 4 };

absl::string_view FieldName(Field f) {
  switch (f) {
    case kDTypeField: return "dtype";
    case kShapeField: return "shape";
    case kOffsetsField: return "data_offsets";
  }
  return "?";
}

// Builds a ShardHeader straight from nlohmann's SAX events, without a DOM: a
// 100 MiB header with a million tensors would cost gigabytes as a json value.
// The header's grammar is shallow, so `expect_` is the whole parse state. The
// first violation stops the parse (an event returns false) and is kept in error_.
class HeaderSax {
 public:
  HeaderSax(std::string_view shard, uint64_t header_size, const ParseLimits& limits)
      : shard_(shard), header_size_(header_size), limits_(limits) {}

  bool null() { return Unexpected("null"); }
  bool boolean(bool) { return Unexpected("a boolean"); }
  bool number_integer(Json::number_integer_t v) {
    if (v >= 0) return Number(static_cast<uint64_t>(v), "");
    return Number(std::nullopt, absl::StrCat(v));
  }
  bool number_unsigned(Json::number_unsigned_t v) { return Number(v, ""); }
  bool number_float(Json::number_float_t, const Json::string_t& text) {
    return Number(std::nullopt, text);
  }
  bool binary(Json::binary_t&) { return Unexpected("binary data"); }
  bool string(Json::string_t& s);
  bool key(Json::string_t& k);
  bool start_object(std::size_t);
  bool end_object();
  bool start_array(std::size_t);
  bool end_array();
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& ex) {
    uint64_t at = position == 0 ? 0 : std::min<uint64_t>(position - 1, header_size_);
    return Fail(absl::StrCat("header is not valid JSON at file byte offset ", 8 + at, ": ",
                             JsonErrorText(ex.what())));
  }

  const absl::Status& status() const { return status_; }
  ShardHeader TakeHeader() { return std::move(header_); }

 private:
  enum class Expect {
    kRoot,
    kTopKey,        // a tensor name, __metadata__, or the end of the root object
    kEntry,         // the object of the tensor just named
    kMetadata,      // the __metadata__ object
    kFieldKey,      // dtype, shape, data_offsets, or the end of the entry
    kFieldValue,    // the value of field_
    kShapeItem,     // a dimension, or the end of shape
    kOffsetItem,    // a data offset, or the end of data_offsets
    kMetadataKey,   // a metadata key, or the end of __metadata__
    kMetadataValue,
    kDone,
  };

  bool Number(std::optional<uint64_t> value, absl::string_view text);
  bool Unexpected(absl::string_view what);
  bool FinishEntry();

  bool Fail(std::string message) {
    if (status_.ok()) status_ = absl::InvalidArgumentError(absl::StrCat("shard ", Quote(shard_), ": ", message));
    return false;
  }
  bool FailTensor(absl::string_view message) {
    return Fail(absl::StrCat("tensor ", Quote(tensor_.name), ": ", message));
  }

  std::string_view shard_;
  uint64_t header_size_;
  const ParseLimits& limits_;
  absl::Status status_;
  ShardHeader header_;

  Expect expect_ = Expect::kRoot;
  std::unordered_set<std::string> names_;
  bool seen_metadata_ = false;
  std::unordered_set<std::string> metadata_keys_;
  std::string metadata_key_;

  // The entry being read.
  TensorHeader tensor_;
  uint8_t fields_seen_ = 0;
  Field field_ = kDTypeField;
  std::string dtype_;
  size_t offsets_seen_ = 0;
};

bool HeaderSax::Unexpected(absl::string_view what) {
  switch (expect_) {
    case Expect::kRoot:
      return Fail(absl::StrCat("header must be a JSON object, got ", what));
    case Expect::kEntry:
      return FailTensor(absl::StrCat("entry must be a JSON object, got ", what));
    case Expect::kMetadata:
      return Fail(absl::StrCat("__metadata__ must be a JSON object of strings, got ", what));
    case Expect::kFieldValue:
      switch (field_) {
        case kDTypeField: return FailTensor(absl::StrCat("dtype must be a string, got ", what));
        case kShapeField:
          return FailTensor(absl::StrCat("shape must be an array of non-negative integers, got ", what));
        case kOffsetsField:
          return FailTensor(
              absl::StrCat("data_offsets must be an array of two non-negative integers, got ", what));
      }
      break;
    case Expect::kShapeItem:
      return FailTensor(absl::StrCat("shape[", tensor_.shape.size(),
                                     "] must be a non-negative integer, got ", what));
    case Expect::kOffsetItem:
      return FailTensor(absl::StrCat("data_offsets[", offsets_seen_,
                                     "] must be a non-negative integer, got ", what));
    case Expect::kMetadataValue:
      return Fail(absl::StrCat("__metadata__ value of key ", Quote(metadata_key_),
                               " must be a string, got ", what));
    case Expect::kTopKey:
    case Expect::kFieldKey:
    case Expect::kMetadataKey:
    case Expect::kDone:
      break;
  }
  return Fail(absl::StrCat("unexpected ", what, " in the header"));
}

bool HeaderSax::Number(std::optional<uint64_t> value, absl::string_view text) {
  if (expect_ == Expect::kShapeItem) {
    if (!value) return Unexpected(text);
    if (*value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return FailTensor(absl::StrCat("shape[", tensor_.shape.size(), "] is ", *value,
                                     ", larger than any dimension can be (2^63 - 1)"));
    }
    if (tensor_.shape.size() >= limits_.max_rank) {
      return FailTensor(absl::StrCat("shape has more than ", limits_.max_rank, " dimensions"));
    }
    tensor_.shape.push_back(static_cast<int64_t>(*value));
    return true;
  }
  if (expect_ == Expect::kOffsetItem) {
    if (!value) return Unexpected(text);
    if (offsets_seen_ == 2) return FailTensor("data_offsets must have exactly 2 entries, got more");
    (offsets_seen_ == 0 ? tensor_.begin : tensor_.end) = *value;
    ++offsets_seen_;
    return true;
  }
  return Unexpected("a number");
}

bool HeaderSax::string(Json::string_t& s) {
  if (expect_ == Expect::kFieldValue && field_ == kDTypeField) {
    dtype_ = std::move(s);
    expect_ = Expect::kFieldKey;
    return true;
  }
  if (expect_ == Expect::kMetadataValue) {
    header_.metadata.emplace_back(std::move(metadata_key_), std::move(s));
    expect_ = Expect::kMetadataKey;
    return true;
  }
  return Unexpected("a string");
}

bool HeaderSax::key(Json::string_t& k) {
  switch (expect_) {
    case Expect::kTopKey:
      if (k == kMetadataKey) {
        if (seen_metadata_) return Fail("duplicate key '__metadata__'");
        seen_metadata_ = true;
        expect_ = Expect::kMetadata;
        return true;
      }
      if (k.empty()) return Fail("a tensor name is empty");
      if (k.size() > limits_.max_name_bytes) {
        return Fail(absl::StrCat("tensor name ", QuotePrefix(k), " is ", k.size(),
                                 " bytes, more than the limit of ", limits_.max_name_bytes));
      }
      if (header_.tensors.size() >= limits_.max_tensors) {
        return Fail(absl::StrCat("more than ", limits_.max_tensors, " tensors (at tensor ", Quote(k), ")"));
      }
      if (!names_.insert(k).second) return Fail(absl::StrCat("duplicate tensor name ", Quote(k)));
      tensor_ = TensorHeader();
      tensor_.name = std::move(k);
      expect_ = Expect::kEntry;
      return true;
    case Expect::kFieldKey: {
      Field f;
      if (k == "dtype") {
        f = kDTypeField;
      } else if (k == "shape") {
        f = kShapeField;
      } else if (k == "data_offsets") {
        f = kOffsetsField;
      } else {
        return FailTensor(absl::StrCat("unexpected field ", Quote(k),
                                       " (an entry has exactly dtype, shape and data_offsets)"));
      }
      if (fields_seen_ & f) return FailTensor(absl::StrCat("duplicate field '", FieldName(f), "'"));
      fields_seen_ |= f;
      field_ = f;
      expect_ = Expect::kFieldValue;
      return true;
    }
    case Expect::kMetadataKey:
      if (!metadata_keys_.insert(k).second) {
        return Fail(absl::StrCat("duplicate __metadata__ key ", Quote(k)));
      }
      metadata_key_ = std::move(k);
      expect_ = Expect::kMetadataValue;
      return true;
    default:
      return Fail("unexpected object key in the header");
  }
}

bool HeaderSax::start_object(std::size_t) {
  switch (expect_) {
    case Expect::kRoot:
      expect_ = Expect::kTopKey;
      return true;
    case Expect::kEntry:
      fields_seen_ = 0;
      offsets_seen_ = 0;
      dtype_.clear();
      expect_ = Expect::kFieldKey;
      return true;
    case Expect::kMetadata:
      expect_ = Expect::kMetadataKey;
      return true;
    default:
      return Unexpected("an object");
  }
}

bool HeaderSax::end_object() {
  switch (expect_) {
    case Expect::kTopKey:
      expect_ = Expect::kDone;
      return true;
    case Expect::kFieldKey:
      if (!FinishEntry()) return false;
      expect_ = Expect::kTopKey;
      return true;
    case Expect::kMetadataKey:
      expect_ = Expect::kTopKey;
      return true;
    default:
      return Fail("unexpected end of object in the header");
  }
}

bool HeaderSax::start_array(std::size_t) {
  if (expect_ == Expect::kFieldValue && field_ == kShapeField) {
    expect_ = Expect::kShapeItem;
    return true;
  }
  if (expect_ == Expect::kFieldValue && field_ == kOffsetsField) {
    expect_ = Expect::kOffsetItem;
    return true;
  }
  return Unexpected("an array");
}

bool HeaderSax::end_array() {
  if (expect_ == Expect::kOffsetItem && offsets_seen_ != 2) {
    return FailTensor(absl::StrCat("data_offsets must have exactly 2 entries, got ", offsets_seen_));
  }
  if (expect_ != Expect::kShapeItem && expect_ != Expect::kOffsetItem) {
    return Fail("unexpected end of array in the header");
  }
  expect_ = Expect::kFieldKey;
  return true;
}

bool HeaderSax::FinishEntry() {
  for (Field f : {kDTypeField, kShapeField, kOffsetsField}) {
    if (!(fields_seen_ & f)) return FailTensor(absl::StrCat("missing field '", FieldName(f), "'"));
  }
  std::optional<kernels::DType> dtype = kernels::ParseDType(dtype_);
  if (!dtype) {
    return FailTensor(absl::StrCat("dtype ", Quote(dtype_),
                                   " is not a safetensors dtype"));
  }
  tensor_.dtype = *dtype;
  if (tensor_.begin > tensor_.end) {
    return FailTensor(absl::StrCat("data_offsets [", tensor_.begin, ", ", tensor_.end,
                                   "] have begin > end (file byte offset ",
                                   FileOffset(8 + header_size_, tensor_.begin), ")"));
  }
  // Zero dimensions are skipped so that the bound does not depend on where they
  // are: code that slices a tensor multiplies subsets of its dimensions.
  uint64_t elements = 1;
  bool empty = false;
  for (int64_t d : tensor_.shape) {
    if (d == 0) {
      empty = true;
      continue;
    }
    if (__builtin_mul_overflow(elements, static_cast<uint64_t>(d), &elements) ||
        elements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return FailTensor(absl::StrCat("shape ", ShapeText(tensor_.shape),
                                     " has more elements than fit in 63 bits"));
    }
  }
  uint64_t bytes;
  if (__builtin_mul_overflow(elements, uint64_t{kernels::DTypeSize(tensor_.dtype)}, &bytes)) {
    return FailTensor(absl::StrCat("shape ", ShapeText(tensor_.shape), " of dtype ",
                                   AsAbsl(kernels::DTypeName(tensor_.dtype)), " has more bytes than fit in 64 bits"));
  }
  if (empty) bytes = 0;
  if (bytes != tensor_.size()) {
    return FailTensor(absl::StrCat("shape ", ShapeText(tensor_.shape), " of dtype ",
                                   AsAbsl(kernels::DTypeName(tensor_.dtype)), " needs ", bytes,
                                   " bytes but data_offsets [", tensor_.begin, ", ", tensor_.end,
                                   "] span ", tensor_.size()));
  }
  header_.tensors.push_back(std::move(tensor_));
  return true;
}

// Tensors sorted by offsets must tile the data section exactly: no gap (bytes no
// tensor owns) and no overlap (bytes two tensors would both read).
absl::Status CheckContiguous(std::string_view shard, ShardHeader& header) {
  std::stable_sort(header.tensors.begin(), header.tensors.end(),
                   [](const TensorHeader& a, const TensorHeader& b) {
                     return std::tie(a.begin, a.end) < std::tie(b.begin, b.end);
                   });
  uint64_t data_start = header.data_start();
  uint64_t expected = 0;
  const TensorHeader* previous = nullptr;
  for (const TensorHeader& t : header.tensors) {
    if (t.begin != expected) {
      std::string where = absl::StrCat("shard ", Quote(shard), ": tensor ", Quote(t.name),
                                       ": data_offsets [", t.begin, ", ", t.end, "] ");
      if (previous == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, "do not start at 0: the first tensor must begin the data section (file byte offset ",
            FileOffset(data_start, t.begin), ")"));
      }
      if (t.begin > expected) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, "leave a gap of ", t.begin - expected, " bytes after the previous tensor ",
            Quote(previous->name), " ending at ", expected, " (file byte offset ",
            FileOffset(data_start, expected), ")"));
      }
      return absl::InvalidArgumentError(absl::StrCat(
          where, "overlap the previous tensor ", Quote(previous->name), " ending at ", expected,
          " (file byte offset ", FileOffset(data_start, t.begin), ")"));
    }
    expected = t.end;
    previous = &t;
  }
  header.data_size = expected;
  uint64_t file_size;
  if (__builtin_add_overflow(data_start, header.data_size, &file_size)) {
    return absl::InvalidArgumentError(absl::StrCat("shard ", Quote(shard), ": data section of ",
                                                   header.data_size,
                                                   " bytes makes the file larger than 2^64 bytes"));
  }
  return absl::OkStatus();
}

}  // namespace

uint64_t TensorHeader::num_elements() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

std::optional<size_t> FindInvalidUtf8(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    uint32_t min;
    if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return i;
    }
    if (n - i < len) return i;
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return std::nullopt;
}

absl::StatusOr<ShardHeader> ParseShardHeaderJson(std::string_view shard_name, std::string_view json,
                                                 const ParseLimits& limits) {
  std::string shard = absl::StrCat("shard ", Quote(shard_name), ": ");
  if (json.size() > limits.max_header_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(shard, "header length ", json.size(),
                                                   " exceeds the limit of ", limits.max_header_bytes,
                                                   " bytes"));
  }
  if (json.empty() || json.front() != '{') {
    return absl::InvalidArgumentError(
        absl::StrCat(shard, "header does not start with '{' (file byte offset 8)"));
  }
  // Checked before JSON parsing so the error says what it is: nlohmann would report
  // it as a generic syntax error.
  if (std::optional<size_t> bad = FindInvalidUtf8(json)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%sheader is not valid UTF-8: byte 0x%02X at file byte offset %d", shard,
                        static_cast<unsigned char>(json[*bad]), 8 + *bad));
  }
  // nlohmann's lexer takes a NUL byte for the end of input, so "{}\0junk" would
  // parse; a raw NUL is never valid JSON.
  if (size_t nul = json.find('\0'); nul != std::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(shard, "header is not valid JSON at file byte offset ", 8 + nul, ": NUL byte"));
  }
  HeaderSax sax(shard_name, json.size(), limits);
  bool ok = Json::sax_parse(json.data(), json.data() + json.size(), &sax, nlohmann::json::input_format_t::json,
                            /*strict=*/true, /*ignore_comments=*/false);
  if (!sax.status().ok()) return sax.status();
  if (!ok) return absl::InvalidArgumentError(absl::StrCat(shard, "header is not valid JSON"));
  ShardHeader header = sax.TakeHeader();
  header.header_size = json.size();
  absl::Status contiguous = CheckContiguous(shard_name, header);
  if (!contiguous.ok()) return contiguous;
  return header;
}

}  // namespace weightd::safetensors
