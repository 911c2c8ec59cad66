// The amax of a rank's slice, against the reference kernels::AbsMax.
#include "services/load/slice_amax.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <iterator>
#include <limits>
#include <string_view>

#include "gtest/gtest.h"
#include "kernels/float_convert.h"

namespace weightd {
namespace {

std::vector<float> Values(size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<float>((i * 7919) % 1000) * ((i % 3) ? -0.01f : 0.02f);
  return v;
}

struct Input {
  kernels::DType dtype;
  const char* bytes;
};

// The same values as F32, BF16 (truncated) and F16.
struct Encoded {
  explicit Encoded(std::vector<float> values) : f32(std::move(values)), bf16(f32.size()), f16(f32.size()) {
    for (size_t i = 0; i < f32.size(); ++i) {
      bf16[i] = static_cast<uint16_t>(std::bit_cast<uint32_t>(f32[i]) >> 16);
      f16[i] = kernels::HalfBitsFromFloat(f32[i]);
    }
  }
  std::vector<Input> inputs() const {
    return {{kernels::DType::kF32, reinterpret_cast<const char*>(f32.data())},
            {kernels::DType::kBF16, reinterpret_cast<const char*>(bf16.data())},
            {kernels::DType::kF16, reinterpret_cast<const char*>(f16.data())}};
  }
  std::vector<float> f32;
  std::vector<uint16_t> bf16, f16;
};

TEST(SliceAmax, EqualsTheReferenceForEveryDtypeWholeAndPerSegment) {
  const size_t rows = 37, cols = 1000;
  const Encoded encoded(Values(rows * cols));
  for (Input in : encoded.inputs()) {
    const size_t e = kernels::DTypeSize(in.dtype);
    std::vector<float> whole;
    ASSERT_TRUE(SliceAmax(in.dtype, in.bytes, {0, 1, rows * cols * e, 0}, false, kernels::NonFinitePolicy::kFail, whole).ok());
    EXPECT_EQ(whole, std::vector<float>{*kernels::AbsMax(in.dtype, in.bytes, rows * cols, kernels::NonFinitePolicy::kFail)});
    // Columns [300, 700) of every row, one amax per row.
    std::vector<float> per_row;
    ASSERT_TRUE(SliceAmax(in.dtype, in.bytes, {300 * e, rows, 400 * e, cols * e}, true, kernels::NonFinitePolicy::kFail,
                          per_row)
                    .ok());
    ASSERT_EQ(per_row.size(), rows);
    for (size_t r = 0; r < rows; ++r) {
      EXPECT_EQ(per_row[r], *kernels::AbsMax(in.dtype, in.bytes + (r * cols + 300) * e, 400, kernels::NonFinitePolicy::kFail));
    }
  }
}

TEST(SliceAmax, NonFiniteValuesFailOrAreLeftOutUnderSaturate) {
  std::vector<float> v = Values(1 << 20);
  v[12345] = std::numeric_limits<float>::infinity();
  v[777] = std::numeric_limits<float>::quiet_NaN();
  const char* bytes = reinterpret_cast<const char*>(v.data());
  std::vector<float> amax;
  EXPECT_EQ(SliceAmax(kernels::DType::kF32, bytes, {0, 1, v.size() * 4, 0}, false, kernels::NonFinitePolicy::kFail, amax)
                .code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(
      SliceAmax(kernels::DType::kF32, bytes, {0, 1, v.size() * 4, 0}, false, kernels::NonFinitePolicy::kSaturate, amax).ok());
  EXPECT_EQ(amax, std::vector<float>{*kernels::AbsMax(kernels::DType::kF32, bytes, v.size(),
                                                      kernels::NonFinitePolicy::kSaturate)});
  EXPECT_EQ(amax[0], 19.98f);
}

// Fed in pieces that cut elements in two (some in three or four), as a stream's
// frames do: the copy is the tensor, the amax the reference's.
TEST(RunningAmax, CopiesAndEqualsTheReferenceWhateverThePieces) {
  const Encoded encoded(Values(100003));
  const size_t n = encoded.f32.size();
  for (const uint64_t largest : {uint64_t{4099}, uint64_t{65537}}) {
    for (Input in : encoded.inputs()) {
      const uint64_t total = n * kernels::DTypeSize(in.dtype);
      std::vector<char> copy(total);
      RunningAmax running(in.dtype);
      const uint64_t sizes[] = {1, 1, 2, 3, 1, 5, largest};
      for (uint64_t at = 0, i = 0; at < total; ++i) {
        const uint64_t piece = std::min(total - at, sizes[i % std::size(sizes)]);
        running.CopyAppend(copy.data(), at, std::string_view(in.bytes + at, piece));
        at += piece;
      }
      EXPECT_EQ(running.scanned(), total);
      EXPECT_EQ(std::memcmp(copy.data(), in.bytes, total), 0);
      ASSERT_TRUE(running.amax().has_value());
      EXPECT_EQ(*running.amax(), *kernels::AbsMax(in.dtype, in.bytes, n, kernels::NonFinitePolicy::kFail));
    }
  }
}

// The largest magnitude in the element split between two pieces.
TEST(RunningAmax, FindsTheMaximumInASplitElement) {
  std::vector<float> v(64, 1.0f);
  v[10] = -300.5f;
  const char* bytes = reinterpret_cast<const char*>(v.data());
  std::vector<float> copy(v.size());
  RunningAmax running(kernels::DType::kF32);
  running.CopyAppend(reinterpret_cast<char*>(copy.data()), 0, std::string_view(bytes, 41));
  running.CopyAppend(reinterpret_cast<char*>(copy.data()), 41, std::string_view(bytes + 41, v.size() * 4 - 41));
  EXPECT_EQ(copy, v);
  ASSERT_TRUE(running.amax().has_value());
  EXPECT_EQ(*running.amax(), 300.5f);
}

TEST(RunningAmax, NoAnswerWhenAValueIsNotFinite) {
  for (float bad : {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::quiet_NaN()}) {
    std::vector<float> v = Values(1000);
    v[999] = bad;
    const char* bytes = reinterpret_cast<const char*>(v.data());
    std::vector<float> copy(v.size());
    char* out = reinterpret_cast<char*>(copy.data());
    RunningAmax running(kernels::DType::kF32);
    running.CopyAppend(out, 0, std::string_view(bytes, 998 * 4 + 3));
    EXPECT_TRUE(running.amax().has_value());  // the bad value is not scanned yet
    running.CopyAppend(out, 998 * 4 + 3, std::string_view(bytes + 998 * 4 + 3, 4 * 2 - 3));
    EXPECT_FALSE(running.amax().has_value());
    EXPECT_EQ(std::memcmp(out, bytes, v.size() * 4), 0);  // copied all the same
  }
  RunningAmax fp8(kernels::DType::kF8E4M3);
  const char byte = 1;
  char out = 0;
  fp8.CopyAppend(&out, 0, std::string_view(&byte, 1));
  EXPECT_EQ(out, 1);
  EXPECT_FALSE(fp8.amax().has_value());  // not a dtype it scans
}

// A piece that does not begin where the last one ended is copied where it says,
// and leaves no answer (the caller takes the full pass over the buffer).
TEST(RunningAmax, NoAnswerForPiecesOutOfOrder) {
  const std::vector<float> v = Values(256);
  const char* bytes = reinterpret_cast<const char*>(v.data());
  std::vector<float> copy(v.size());
  char* out = reinterpret_cast<char*>(copy.data());
  RunningAmax running(kernels::DType::kF32);
  running.CopyAppend(out, 512, std::string_view(bytes + 512, 512));
  running.CopyAppend(out, 0, std::string_view(bytes, 512));
  EXPECT_EQ(copy, v);
  EXPECT_FALSE(running.amax().has_value());
  // Bytes sent again (a piece repeated, cutting an element) are copied alike, with no answer.
  std::vector<float> again(v.size());
  char* into = reinterpret_cast<char*>(again.data());
  RunningAmax repeated(kernels::DType::kF32);
  repeated.CopyAppend(into, 0, std::string_view(bytes, 510));
  repeated.CopyAppend(into, 0, std::string_view(bytes, 510));
  repeated.CopyAppend(into, 510, std::string_view(bytes + 510, 1024 - 510));
  EXPECT_EQ(again, v);
  EXPECT_FALSE(repeated.amax().has_value());
}

}  // namespace
}  // namespace weightd
