// Tensor parallelism end to end: the real daemon with 8 host devices, the real
// weightctl. Each rank's export is verified byte for byte against the CPU
// reference sliced (weightctl verify --tp N --rank R); the manifest of a rank
// lists its slices; device usage equals the ranks' allocations; a split that
// does not divide fails with its documented message.
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/e2e/daemon_process.h"
#include "tests/services/load/tp_checkpoint.h"

namespace weightd::testing {
namespace {

class TpE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(WriteTpCheckpoint(MakeTpCheckpoint(), daemon_.model_root() + "/tp").ok());
    ASSERT_TRUE(WriteTpCheckpoint(MakeTpCheckpoint(690), daemon_.model_root() + "/uneven").ok());
    daemon_.Start({"--host-devices=8"});
  }
  void ExpectOk(const CommandResult& result) { EXPECT_EQ(result.exit_code, 0) << result.out << result.err; }

  // Exports every rank of `model` and verifies each against the reference.
  void ExportAndVerify(const std::string& model, int tp, const std::vector<std::string>& flags) {
    for (int r = 0; r < tp; ++r) {
      const std::string out = absl::StrCat(daemon_.dir(), "/", model, "-rank", r);
      ExpectOk(daemon_.Ctl({"export", model, out, absl::StrCat("--rank=", r)}));
      std::vector<std::string> verify = {"verify", daemon_.model_root() + "/tp", out, absl::StrCat("--tp=", tp),
                                         absl::StrCat("--rank=", r)};
      verify.insert(verify.end(), flags.begin(), flags.end());
      CommandResult result = daemon_.Ctl(verify);
      ExpectOk(result);
      EXPECT_NE(result.out.find("verified 15 tensors"), std::string::npos) << result.out;
    }
  }

  nlohmann::json Json(const CommandResult& result) {
    EXPECT_EQ(result.exit_code, 0) << result.err;
    return nlohmann::json::parse(result.out, nullptr, false);
  }

  DaemonProcess daemon_;
};

TEST_F(TpE2ETest, EveryRankOfEverySchemeVerifiesAgainstTheReferenceSliced) {
  ExpectOk(daemon_.Ctl({"load", "pt", "--path=tp", "--tp=4"}));
  ExportAndVerify("pt", 4, {});
  ExpectOk(daemon_.Ctl({"load", "pc", "--path=tp", "--tp=8", "--scheme=per-channel", "--scale-scope=shard"}));
  ExportAndVerify("pc", 8, {"--scheme=per-channel", "--scale-scope=shard"});
  ExpectOk(daemon_.Ctl({"load", "bl", "--push=" + daemon_.model_root() + "/tp", "--tp=2", "--scheme=block"}));
  ExportAndVerify("bl", 2, {"--scheme=block"});

  // The check can fail: rank 1's export is not rank 0's.
  CommandResult wrong = daemon_.Ctl({"verify", daemon_.model_root() + "/tp", daemon_.dir() + "/pt-rank1", "--tp=4",
                                     "--rank=0"});
  EXPECT_EQ(wrong.exit_code, 1) << wrong.out;
  EXPECT_NE(wrong.err.find("FAILED_PRECONDITION"), std::string::npos) << wrong.err;
}

TEST_F(TpE2ETest, ARanksManifestListsItsSlicesAndDeviceUsageIsTheRanksAllocations) {
  ExpectOk(daemon_.Ctl({"load", "m", "--path=tp", "--tp=4"}));
  nlohmann::json rank2 = Json(daemon_.Ctl({"manifest", "m", "--rank=2", "--json"}));
  ASSERT_EQ(rank2["ranks"].size(), 1u);
  EXPECT_EQ(rank2["ranks"][0]["rank"], 2);
  bool found = false;
  for (const nlohmann::json& tensor : rank2["ranks"][0]["tensors"]) {
    if (tensor["name"] != "model.layers.0.self_attn.o_proj.weight") continue;
    found = true;
    EXPECT_EQ(tensor["shape"], nlohmann::json::parse(R"(["256", "256"])"));
    EXPECT_EQ(tensor["slice"]["dim"], 1);
    EXPECT_EQ(tensor["slice"]["begin"], "512");
    EXPECT_EQ(tensor["slice"]["full_shape"], nlohmann::json::parse(R"(["256", "1024"])"));
  }
  EXPECT_TRUE(found);

  nlohmann::json manifest = Json(daemon_.Ctl({"manifest", "m", "--json"}));
  nlohmann::json status = Json(daemon_.Ctl({"status", "--json"}));
  ASSERT_EQ(manifest["ranks"].size(), 4u);
  for (const nlohmann::json& rank : manifest["ranks"]) {
    const int device = rank.value("device", 0);
    const uint64_t allocated = std::stoull(rank["allocations"][0]["size"].get<std::string>());
    const uint64_t used = std::stoull(status["devices"][device]["used_bytes"].get<std::string>());
    EXPECT_EQ(used, allocated) << "device " << device;
    EXPECT_EQ(daemon_.Metric(absl::StrCat("weightd_device_memory_used_bytes{device=\"", device, "\"}")),
              static_cast<double>(allocated));
  }
  // Device 4 holds no rank: --json prints its zero (every field is spelled out).
  EXPECT_EQ(status["devices"][4].value("used_bytes", std::string("0")), "0");
  ExpectOk(daemon_.Ctl({"unload", "m"}));
  EXPECT_EQ(daemon_.Metric("weightd_device_memory_used_bytes{device=\"3\"}"), 0);
}

TEST_F(TpE2ETest, RulesFromAFileOverrideTheBuiltInSplit) {
  const std::string rules = daemon_.dir() + "/rules.json";
  std::ofstream(rules) << R"([{"pattern": ".*\\.o_proj\\.weight", "split": "replicate"}])";
  ExpectOk(daemon_.Ctl({"load", "r", "--path=tp", "--tp=2", "--tp-rules=" + rules}));
  ExportAndVerify("r", 2, {"--tp-rules=" + rules});
  CommandResult manifest = daemon_.Ctl({"manifest", "r", "--rank=1"});
  EXPECT_NE(manifest.out.find("model.layers.0.self_attn.o_proj.weight"), std::string::npos);
  EXPECT_NE(manifest.out.find("[256, 1024]"), std::string::npos) << manifest.out;

  std::ofstream(daemon_.dir() + "/bad.json") << R"([{"pattern": ".*", "split": "diagonal"}])";
  CommandResult bad = daemon_.Ctl({"load", "b", "--path=tp", "--tp=2", "--tp-rules=" + daemon_.dir() + "/bad.json"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("INVALID_ARGUMENT: " + daemon_.dir() +
                         "/bad.json: rule 0: split 'diagonal' is not column, row, vocab or replicate"),
            std::string::npos)
      << bad.err;
}

TEST_F(TpE2ETest, ASplitThatDoesNotDivideFailsWithItsMessage) {
  CommandResult result = daemon_.Ctl({"load", "u", "--path=uneven", "--tp=8"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find("weightctl: INVALID_ARGUMENT: tensor 'model.layers.0.mlp.gate_proj.weight' [690, 256]: "
                            "dim 0 (690) is not divisible by tp_size 8"),
            std::string::npos)
      << result.err;
  for (int d = 0; d < 8; ++d) {
    EXPECT_EQ(daemon_.Metric(absl::StrCat("weightd_device_memory_used_bytes{device=\"", d, "\"}")), 0);
  }
}

}  // namespace
}  // namespace weightd::testing
