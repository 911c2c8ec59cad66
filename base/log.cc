#include "base/log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <ctime>

#include "nlohmann/json.hpp"

namespace weightd {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<int> g_format{static_cast<int>(LogFormat::kText)};

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kError: return "error";
  }
  return "info";
}

std::string Timestamp() {
  auto now = std::chrono::system_clock::now();
  std::time_t secs = std::chrono::system_clock::to_time_t(now);
  auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm;
  gmtime_r(&secs, &tm);
  char buf[40];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof(out), "%s.%03dZ", buf, static_cast<int>(millis));
  return out;
}

void WriteLine(std::string line) {
  line.push_back('\n');
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n <= 0) return;
    p += n;
    left -= static_cast<size_t>(n);
  }
}

// Text mode: a value stays bare unless a reader could not tell where it ends.
std::string TextValue(const LogField& f) {
  if (f.numeric) return f.value;
  bool plain = !f.value.empty();
  for (char c : f.value) {
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20) plain = false;
  }
  if (plain) return f.value;
  std::string out = "\"";
  for (char c : f.value) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
  return out;
}

void WriteRecord(LogLevel level, const std::string& event, std::initializer_list<LogField> fields) {
  if (g_format.load() == static_cast<int>(LogFormat::kJson)) {
    nlohmann::json j;
    j["ts"] = Timestamp();
    j["level"] = LevelName(level);
    j["event"] = event;
    for (const LogField& f : fields) {
      if (f.numeric) {
        j[f.key] = nlohmann::json::parse(f.value, nullptr, /*allow_exceptions=*/false);
      } else {
        j[f.key] = f.value;
      }
    }
    WriteLine(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    return;
  }
  std::string line = Timestamp() + " " + LevelName(level) + " " + event;
  for (const LogField& f : fields) line += " " + f.key + "=" + TextValue(f);
  WriteLine(std::move(line));
}

}  // namespace

void SetLogLevel(LogLevel level) { g_level = static_cast<int>(level); }
void SetLogFormat(LogFormat format) { g_format = static_cast<int>(format); }
bool LogEnabled(LogLevel level) { return static_cast<int>(level) >= g_level.load(); }

bool ParseLogLevel(const std::string& text, LogLevel* level) {
  for (LogLevel l : {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarning, LogLevel::kError}) {
    if (text == LevelName(l)) {
      *level = l;
      return true;
    }
  }
  return false;
}

void LogEvent(LogLevel level, const std::string& event, std::initializer_list<LogField> fields) {
  if (LogEnabled(level)) WriteRecord(level, event, fields);
}

void LogLifecycle(const std::string& event, std::initializer_list<LogField> fields) {
  WriteRecord(LogLevel::kInfo, event, fields);
}

LogMessage::LogMessage(LogLevel level, const char* file, int line)
    : level_(level), file_(file), line_(line) {}

LogMessage::~LogMessage() {
  const char* base = std::strrchr(file_, '/');
  std::string where = std::string(base ? base + 1 : file_) + ":" + std::to_string(line_);
  LogEvent(level_, "log", {{"at", where}, {"msg", stream_.str()}});
}

}  // namespace weightd
