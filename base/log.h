// The project's one logging entry point (this Abseil has no absl/log).
// Thread-safe: each record is written with one write(2) to stderr.
//
//   WEIGHTD_LOG(INFO) << "listening on " << addr;
//   LogEvent("load_phase", {{"model", id}, {"phase", "ready"}});  // structured
#pragma once

#include <initializer_list>
#include <sstream>
#include <string>
#include <utility>

namespace weightd {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };
enum class LogFormat { kText, kJson };

void SetLogLevel(LogLevel level);
void SetLogFormat(LogFormat format);
bool ParseLogLevel(const std::string& text, LogLevel* level);
bool LogEnabled(LogLevel level);

// One field of a structured record; numbers are written unquoted in JSON.
struct LogField {
  LogField(std::string k, std::string v) : key(std::move(k)), value(std::move(v)) {}
  LogField(std::string k, const char* v) : key(std::move(k)), value(v) {}
  template <typename T, typename = std::enable_if_t<std::is_arithmetic_v<T>>>
  LogField(std::string k, T v) : key(std::move(k)), value(std::to_string(v)), numeric(true) {}
  std::string key;
  std::string value;
  bool numeric = false;
};

void LogEvent(LogLevel level, const std::string& event, std::initializer_list<LogField> fields);
// An info record written at every --log-level: the daemon's lifecycle (ready, signal,
// shutdown), which supervisors and tests wait for.
void LogLifecycle(const std::string& event, std::initializer_list<LogField> fields);

class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  ~LogMessage();
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  const char* file_;
  int line_;
  std::ostringstream stream_;
};

}  // namespace weightd

#define WEIGHTD_LOG_LEVEL_DEBUG ::weightd::LogLevel::kDebug
#define WEIGHTD_LOG_LEVEL_INFO ::weightd::LogLevel::kInfo
#define WEIGHTD_LOG_LEVEL_WARNING ::weightd::LogLevel::kWarning
#define WEIGHTD_LOG_LEVEL_ERROR ::weightd::LogLevel::kError
#define WEIGHTD_LOG(level)                                   \
  if (!::weightd::LogEnabled(WEIGHTD_LOG_LEVEL_##level)) {   \
  } else                                                     \
    ::weightd::LogMessage(WEIGHTD_LOG_LEVEL_##level, __FILE__, __LINE__).stream()
