// weightctl's and weightd's --help (every flag, each explained with an example)
// and --json of the read commands (parsed, with the figures a script needs).
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/e2e/daemon_process.h"

namespace weightd::testing {
namespace {

// The text Abseil prints for one flag: from "--name (" up to the next flag.
std::string FlagHelp(const std::string& help, const std::string& flag) {
  size_t begin = help.find("--" + flag + " (");
  if (begin == std::string::npos) return "";
  size_t end = help.find("\n    --", begin);
  return help.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
}

// Every flag --help lists, by name.
std::vector<std::string> ListedFlags(const std::string& help) {
  std::vector<std::string> names;
  for (size_t at = help.find("\n    --"); at != std::string::npos; at = help.find("\n    --", at + 1)) {
    size_t begin = at + 7, end = help.find(' ', begin);
    names.push_back(help.substr(begin, end - begin));
  }
  return names;
}

// `flags` must be listed; every listed flag (new ones too) must carry an example.
void ExpectEveryFlagExplained(const std::string& binary, const std::vector<std::string>& flags) {
  CommandResult help = RunCommand({BinPath(binary), "--help"});
  const std::string text = help.out + help.err;
  EXPECT_NE(text.find("Flags from " + binary + ":"), std::string::npos) << text;
  for (const std::string& flag : flags) {
    EXPECT_FALSE(FlagHelp(text, flag).empty()) << binary << " --help does not list --" << flag << ":\n" << text;
  }
  const std::vector<std::string> listed = ListedFlags(text);
  EXPECT_GE(listed.size(), flags.size());
  for (const std::string& flag : listed) {
    const std::string entry = FlagHelp(text, flag);
    EXPECT_NE(entry.find("e.g."), std::string::npos) << binary << " --" << flag << " has no example: " << entry;
  }
  EXPECT_EQ(text.find("--flagfile ("), std::string::npos) << "Abseil's own flags belong under --helpfull";
}

TEST(HelpTest, WeightctlExplainsEveryFlagWithAnExample) {
  ExpectEveryFlagExplained("weightctl", {"address", "handle_socket", "json", "rank", "force", "path", "push",
                                         "scheme", "ignore", "nonfinite", "tp", "progress"});
}

TEST(HelpTest, WeightdExplainsEveryFlagWithAnExample) {
  ExpectEveryFlagExplained("weightd", {"listen", "handle_socket", "metrics_address", "health_address", "backend",
                                       "host_devices", "cuda_handles", "staging_ring_bytes", "device_memory_limit",
                                       "read_threads", "read_segment_bytes", "model_root", "log_level",
                                       "log_format"});
}

nlohmann::json Json(const CommandResult& result) {
  EXPECT_EQ(result.exit_code, 0) << result.err;
  auto parsed = nlohmann::json::parse(result.out, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(parsed.is_discarded()) << "not JSON:\n" << result.out;
  return parsed;
}

TEST(JsonTest, ReadCommandsPrintJsonWithEveryFigure) {
  DaemonProcess daemon;
  ASSERT_EQ(daemon.GenerateTiny("tiny", {}).exit_code, 0);
  daemon.Start();
  ASSERT_EQ(daemon.Ctl({"load", "tiny", "--path=tiny"}).exit_code, 0);

  nlohmann::json status = Json(daemon.Ctl({"status", "--json"}));
  ASSERT_EQ(status["devices"].size(), 1u) << status.dump();
  EXPECT_EQ(status["devices"][0]["kind"], "DEVICE_KIND_HOST");
  EXPECT_GT(std::stoull(status["devices"][0]["used_bytes"].get<std::string>()), 0u);
  EXPECT_GE(std::stoull(status["devices"][0]["peak_bytes"].get<std::string>()),
            std::stoull(status["devices"][0]["used_bytes"].get<std::string>()));
  ASSERT_EQ(status["models"].size(), 1u);
  EXPECT_EQ(status["models"][0]["model_id"], "tiny");
  EXPECT_EQ(status["models"][0]["state"], "MODEL_STATE_READY");
  EXPECT_EQ(status["models"][0]["leases"], 0) << "zero counts must be printed too";

  nlohmann::json list = Json(daemon.Ctl({"list", "--json"}));
  ASSERT_EQ(list["models"].size(), 1u);
  EXPECT_EQ(list["models"][0]["resident_bytes"], status["models"][0]["resident_bytes"]);

  nlohmann::json manifest = Json(daemon.Ctl({"manifest", "tiny", "--json"}));
  ASSERT_EQ(manifest["ranks"].size(), 1u);
  EXPECT_FALSE(manifest["ranks"][0]["tensors"].empty());

  const std::string exported = daemon.dir() + "/export";
  ASSERT_EQ(daemon.Ctl({"export", "tiny", exported}).exit_code, 0);
  nlohmann::json verify = Json(daemon.Ctl({"verify", daemon.model_root() + "/tiny", exported, "--json"}));
  EXPECT_GT(verify["quantized"].get<int>(), 0);
  EXPECT_EQ(verify["verified"].get<int>(), verify["quantized"].get<int>() + verify["unchanged"].get<int>());
  // Each quantized tensor is two in the manifest: the FP8 weight and its scale.
  EXPECT_EQ(verify["verified"].get<size_t>() + verify["quantized"].get<size_t>(),
            manifest["ranks"][0]["tensors"].size());
}

TEST(HumanOutputTest, LoadAndStatusPrintSizesAndDurations) {
  DaemonProcess daemon;
  ASSERT_EQ(daemon.GenerateTiny("tiny", {}).exit_code, 0);
  daemon.Start();
  CommandResult load = daemon.Ctl({"load", "tiny", "--path=tiny"});
  ASSERT_EQ(load.exit_code, 0) << load.err;
  EXPECT_TRUE(load.out.find(" ms\n") != std::string::npos || load.out.find(" s\n") != std::string::npos) << load.out;
  EXPECT_NE(load.out.find("MiB resident from"), std::string::npos) << load.out;
  CommandResult status = daemon.Ctl({"status"});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  for (const char* column : {"DEVICE", "USED", "PEAK", "CAPACITY", "MODEL", "STATE", "RESIDENT", "LEASES", "READY"}) {
    EXPECT_NE(status.out.find(column), std::string::npos) << column << " missing from\n" << status.out;
  }
}

}  // namespace
}  // namespace weightd::testing
