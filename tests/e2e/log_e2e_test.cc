// End to end: what an operator's log collector and kubelet see. The real daemon's
// stderr is one JSON object per line with every load phase (model, source, scheme,
// bytes, seconds, result); --log-level filters, --log-format=text is for people; and
// --health-address serves the standard gRPC health service and nothing else.
#include <grpcpp/generic/generic_stub.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "client/cpp/channel.h"

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/e2e/daemon_process.h"
#include "tests/e2e/shard_files.h"

namespace weightd::testing {
namespace {

std::vector<std::string> Lines(const std::string& log) {
  std::vector<std::string> out;
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// Every line parsed as JSON; a line that is not JSON fails the test.
std::vector<nlohmann::json> JsonLines(const std::string& log) {
  std::vector<nlohmann::json> out;
  for (const std::string& line : Lines(log)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    EXPECT_FALSE(j.is_discarded() || !j.is_object()) << "not a JSON object: " << line;
    if (!j.is_discarded()) out.push_back(std::move(j));
  }
  return out;
}

class LogE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    checkpoint_ = daemon_.model_root() + "/tiny";
    CommandResult gen = daemon_.GenerateTiny("tiny", {"--shards=2"});
    ASSERT_EQ(gen.exit_code, 0) << gen.err;
  }

  DaemonProcess daemon_;
  std::string checkpoint_;
};

TEST_F(LogE2ETest, EveryLinePhaseByPhaseIsOneJsonObject) {
  daemon_.Start();
  EXPECT_EQ(daemon_.Ctl({"load", "by-path", "--path=tiny"}).exit_code, 0);
  EXPECT_EQ(daemon_.Ctl({"load", "by-push", "--push=" + checkpoint_, "--scheme=per-channel"}).exit_code, 0);
  EXPECT_EQ(daemon_.Ctl({"load", "missing", "--path=not-there"}).exit_code, 1);
  EXPECT_EQ(daemon_.Stop(), 0);

  // The planner's source bytes: the tensors' data, not the headers.
  const uint64_t bytes = ShardDataBytes(checkpoint_);
  // model -> event -> record
  std::map<std::string, std::map<std::string, nlohmann::json>> phases;
  for (const nlohmann::json& j : JsonLines(daemon_.log())) {
    ASSERT_TRUE(j.contains("ts") && j.contains("level") && j.contains("event")) << j;
    const std::string event = j["event"];
    if (event.rfind("load_", 0) != 0) continue;
    for (const char* key : {"model", "source", "scheme", "result"}) EXPECT_TRUE(j[key].is_string()) << key << " " << j;
    for (const char* key : {"bytes", "seconds"}) EXPECT_TRUE(j[key].is_number()) << key << " " << j;
    EXPECT_EQ(phases[j.value("model", "")].count(event), 0u) << "twice: " << j;
    phases[j.value("model", "")][event] = j;
  }

  for (const auto& [model, source, scheme] : {std::tuple{"by-path", "path", "per-tensor"},
                                              std::tuple{"by-push", "push", "per-channel"}}) {
    auto& p = phases[model];
    ASSERT_EQ(p.size(), 3u) << model << ": started, planned, finished";
    for (const char* event : {"load_started", "load_planned", "load_finished"}) {
      EXPECT_EQ(p[event]["source"], source) << model << " " << event;
      EXPECT_EQ(p[event]["scheme"], scheme) << model << " " << event;
      EXPECT_EQ(p[event]["result"], "ok") << model << " " << event;
    }
    EXPECT_EQ(p["load_started"]["bytes"], 0u);
    EXPECT_EQ(p["load_planned"]["bytes"], bytes) << model;
    EXPECT_EQ(p["load_finished"]["bytes"], bytes) << model;
    EXPECT_GE(p["load_finished"]["seconds"].get<double>(), p["load_planned"]["seconds"].get<double>());
  }
  // Turned away before it started: only the outcome, with its code.
  auto& missing = phases["missing"];
  ASSERT_EQ(missing.count("load_finished"), 1u);
  EXPECT_EQ(missing.size(), 1u);
  EXPECT_EQ(missing["load_finished"]["result"], "refused");
  EXPECT_EQ(missing["load_finished"]["code"], "NOT_FOUND");
  EXPECT_EQ(missing["load_finished"]["level"], "warning");
}

TEST_F(LogE2ETest, LevelFlagDropsInfoAndKeepsWarnings) {
  daemon_.Start({"--log-level=warning"});
  EXPECT_EQ(daemon_.Ctl({"load", "ok", "--path=tiny"}).exit_code, 0);
  EXPECT_EQ(daemon_.Ctl({"load", "missing", "--path=not-there"}).exit_code, 1);
  EXPECT_EQ(daemon_.Stop(), 0);
  int warnings = 0;
  for (const nlohmann::json& j : JsonLines(daemon_.log())) {
    // The lifecycle records are written at every level: supervisors wait for them.
    const std::string event = j["event"];
    if (event == "ready" || event == "signal" || event == "shutdown") continue;
    EXPECT_NE(j["level"], "info") << j;
    if (j["event"] == "load_finished") ++warnings;
  }
  EXPECT_EQ(warnings, 1);
}

TEST_F(LogE2ETest, TextFormatIsOneReadableLinePerRecord) {
  daemon_.Start({"--log-format=text"});
  EXPECT_EQ(daemon_.Ctl({"load", "t", "--path=tiny"}).exit_code, 0);
  EXPECT_EQ(daemon_.Stop(), 0);
  bool finished = false;
  for (const std::string& line : Lines(daemon_.log())) {
    EXPECT_NE(line.front(), '{') << line;
    if (line.find(" info load_finished model=t source=path scheme=per-tensor result=ok ") != std::string::npos) {
      finished = true;
    }
  }
  EXPECT_TRUE(finished) << daemon_.log();
}

// One unary call with raw protobuf bytes, as a kubelet gRPC probe makes it.
grpc::Status RawUnary(const std::string& address, const std::string& method, const std::string& request,
                      std::string* response) {
  grpc::GenericStub stub(client::MakeChannel(address));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::Slice slice(request);
  grpc::ByteBuffer in(&slice, 1), out;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status result;
  stub.UnaryCall(&context, method, grpc::StubOptions(), &in, &out, [&](grpc::Status s) {
    std::lock_guard<std::mutex> lock(mu);
    result = std::move(s);
    done = true;
    cv.notify_one();
  });
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return done; });
  std::vector<grpc::Slice> slices;
  if (result.ok() && out.Dump(&slices).ok()) {
    for (const grpc::Slice& s : slices) response->append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return result;
}

TEST_F(LogE2ETest, HealthAddressServesTheHealthServiceAlone) {
  daemon_.Start({"--health-address=127.0.0.1:0"});
  ASSERT_GT(daemon_.health_port(), 0);
  const std::string address = "127.0.0.1:" + std::to_string(daemon_.health_port());
  // grpc.health.v1.HealthCheckRequest{service: ""} is empty; the answer is {status: SERVING (1)}.
  std::string response;
  grpc::Status health = RawUnary(address, "/grpc.health.v1.Health/Check", "", &response);
  ASSERT_TRUE(health.ok()) << health.error_message();
  EXPECT_EQ(response, std::string("\x08\x01", 2));
  // The Loader API is not reachable there (an empty ListModelsRequest).
  std::string ignored;
  EXPECT_EQ(RawUnary(address, "/weightd.v1.Loader/ListModels", "", &ignored).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  // The same service answers on the Unix socket the workers use.
  response.clear();
  ASSERT_TRUE(RawUnary(daemon_.grpc_address(), "/grpc.health.v1.Health/Check", "", &response).ok());
  EXPECT_EQ(response, std::string("\x08\x01", 2));
}

// A probe that stays green while the daemon cannot serve would keep kubelet
// routing workers to it: when the handle socket's thread ends, health turns
// NOT_SERVING on both the health port and the Unix socket.
TEST_F(LogE2ETest, HealthTurnsNotServingWhenTheHandleSocketStops) {
  daemon_.Start({"--health-address=127.0.0.1:0", "--test-stop-handle-server-after-seconds=1"});
  ASSERT_GT(daemon_.health_port(), 0);
  const std::string address = "127.0.0.1:" + std::to_string(daemon_.health_port());
  std::string response;
  for (int i = 0; i < 200; ++i) {  // bounded wait for the (deliberate) stop
    response.clear();
    ASSERT_TRUE(RawUnary(address, "/grpc.health.v1.Health/Check", "", &response).ok());
    if (response != std::string("\x08\x01", 2)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(response, std::string("\x08\x02", 2));  // NOT_SERVING
  response.clear();
  ASSERT_TRUE(RawUnary(daemon_.grpc_address(), "/grpc.health.v1.Health/Check", "", &response).ok());
  EXPECT_EQ(response, std::string("\x08\x02", 2));
  EXPECT_NE(daemon_.log().find("\"event\":\"unhealthy\""), std::string::npos) << daemon_.log();
  EXPECT_NE(daemon_.log().find("handle socket"), std::string::npos);
}

}  // namespace
}  // namespace weightd::testing
