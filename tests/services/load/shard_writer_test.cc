// A pushed tensor gathered on the host: without --host-memory-limit, memory that
// cannot be had fails its load RESOURCE_EXHAUSTED naming the tensor, never as an
// exception that ends the daemon (the address space is capped in a child
// process, so the allocation fails for certain and the test process is
// unharmed); pieces out of order fail INTERNAL naming the tensor and the bytes.
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "services/device/accounting.h"
#include "services/device/host_backend.h"
#include "services/load/load_job.h"
#include "services/load/spec_validation.h"
#include "tests/services/load/one_shard_push.h"

namespace weightd {
namespace {

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define WEIGHTD_SANITIZED 1
#endif
#endif

uint64_t AddressSpaceBytes() {
  std::ifstream statm("/proc/self/statm");
  uint64_t pages = 0;
  statm >> pages;
  return pages * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

// Exit code 0: the gathering failed RESOURCE_EXHAUSTED naming the tensor.
int GatherUnderACappedAddressSpace() {
  constexpr uint64_t kTensorBytes = uint64_t{1} << 30;  // BF16 [16384, 32768]: a 512 MiB FP8 arena
  HostBackend backend(1, uint64_t{4} << 30);
  DeviceAccounting accounting({uint64_t{4} << 30});
  v1::LoadModelRequest request;
  request.set_model_id("m");
  request.mutable_source()->mutable_push()->add_shard_files("a.safetensors");
  auto job = std::make_shared<LoadJob>("m", NormalizeSpec(request), backend, accounting,
                                       [](const LoadJob*, absl::StatusOr<ResidentModel>) {});
  job->ExpectShards({"a.safetensors"}, "{}");
  auto header = safetensors::ParseShardHeaderJson(
      "a.safetensors",
      R"({"w.weight":{"dtype":"BF16","shape":[16384,32768],"data_offsets":[0,)" + std::to_string(kTensorBytes) + "]}}",
      {});
  if (!header.ok()) return 2;
  // Room for the arena, not for the gathered tensor besides it.
  rlimit cap{AddressSpaceBytes() + (uint64_t{768} << 20), RLIM_INFINITY};
  cap.rlim_max = cap.rlim_cur;
  if (::setrlimit(RLIMIT_AS, &cap) != 0) return 3;
  absl::Status planned = absl::UnknownError("not resumed");
  job->OnShardHeader("a.safetensors", *header, [&planned](absl::Status s) { planned = s; });
  if (!planned.ok()) {
    std::fprintf(stderr, "plan: %s\n", planned.ToString().c_str());
    return 4;
  }
  ShardWriter* writer = job->Writer("a.safetensors");
  if (writer == nullptr) return 5;
  const std::string first(4096, '\0');
  absl::Status gathered = writer->OnTensorBytes(0, 0, first);
  std::fprintf(stderr, "gathered: %s\n", gathered.ToString().c_str());
  job->OnShardDone("a.safetensors", gathered);
  return gathered.code() == absl::StatusCode::kResourceExhausted &&
                 gathered.message().find("tensor 'w.weight'") != std::string::npos
             ? 0
             : 6;
}

TEST(ShardWriterTest, AGatheringBufferThatCannotBeAllocatedFailsTheLoadNamingTheTensor) {
#ifdef WEIGHTD_SANITIZED
  GTEST_SKIP() << "sanitizers reserve more address space than the cap leaves";
#else
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(std::exit(GatherUnderACappedAddressSpace()), ::testing::ExitedWithCode(0), "gathered: RESOURCE_EXHAUSTED");
#endif
}

// A gathered tensor's pieces out of order (no caller sends them: the parser and
// path reads deliver in order) fail INTERNAL naming the tensor and the bytes,
// instead of landing in the wrong place; the load fails with it.
TEST(ShardWriterTest, AGatheredTensorsPiecesOutOfOrderFailNamingTheTensorAndBytes) {
  HostBackend backend(1, uint64_t{1} << 30);
  OneShardPush push(backend);
  ShardWriter* writer = push.Plan(R"({"w.weight":{"dtype":"BF16","shape":[64,128],"data_offsets":[0,16384]}})");
  ASSERT_NE(writer, nullptr);
  const std::string piece(4096, '\x01');
  ASSERT_TRUE(writer->OnTensorBytes(0, 0, piece).ok());
  absl::Status skipped = writer->OnTensorBytes(0, 8192, piece);
  EXPECT_EQ(skipped.code(), absl::StatusCode::kInternal) << skipped;
  EXPECT_NE(skipped.message().find("tensor 'w.weight': bytes [8192, +4096) out of order (4096 gathered)"),
            std::string::npos)
      << skipped;
  push.Done(skipped);
  EXPECT_EQ(push.result.code(), absl::StatusCode::kInternal) << push.result;
}

}  // namespace
}  // namespace weightd
