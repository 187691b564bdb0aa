#include "log/log.hpp"

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace director {
namespace {

std::atomic<LogLevel> current_level{LogLevel::info};
std::atomic<LogFormat> current_format{LogFormat::text};
std::mutex output_mutex;

// 2025-01-31T12:00:00.123Z
std::string timestamp(std::chrono::system_clock::time_point time) {
  const auto seconds = std::chrono::system_clock::to_time_t(time);
  const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(time.time_since_epoch()).count() % 1000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char stamp[40];
  const auto length = std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(stamp + length, sizeof stamp - length, ".%03dZ", static_cast<int>(millis));
  return stamp;
}

// Text: every byte printable ASCII, so a value can neither end the line nor fake a field, and
// terminals show what was logged.
void append_escaped(std::string& out, std::string_view text, bool in_quotes) {
  static constexpr char hex[] = "0123456789abcdef";
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '\\') out += "\\\\";
    else if (c == '"' && in_quotes) out += "\\\"";
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (byte < 0x20 || byte >= 0x7f) {
      out += "\\x";
      out += hex[byte >> 4];
      out += hex[byte & 0xf];
    } else {
      out += c;
    }
  }
}

bool needs_quotes(std::string_view value) {
  return value.empty() || value.find_first_of(" \"=") != std::string_view::npos;
}

std::string format_text(std::string_view time, LogLevel level, std::string_view message,
                        std::span<const LogField> fields) {
  std::string line(time);
  line += ' ';
  line += to_string(level);
  line += ' ';
  append_escaped(line, message, false);
  for (const auto& [key, value] : fields) {
    line += ' ';
    append_escaped(line, key, false);
    line += '=';
    if (needs_quotes(value)) {
      line += '"';
      append_escaped(line, value, true);
      line += '"';
    } else {
      append_escaped(line, value, false);
    }
  }
  line += '\n';
  return line;
}

std::string format_json(std::string_view time, LogLevel level, std::string_view message,
                        std::span<const LogField> fields) {
  nlohmann::ordered_json line;
  line["ts"] = time;
  line["level"] = to_string(level);
  line["msg"] = message;
  for (const auto& [key, value] : fields) {
    std::string name(key);
    if (name == "ts" || name == "level" || name == "msg") name = "field_" + name;
    line[name] = value;
  }
  auto text = line.dump(-1, ' ', true, nlohmann::ordered_json::error_handler_t::replace);
  text += '\n';
  return text;
}

}  // namespace

std::string_view to_string(LogLevel level) noexcept {
  switch (level) {
    case LogLevel::error: return "error";
    case LogLevel::warn: return "warn";
    case LogLevel::info: return "info";
    case LogLevel::debug: return "debug";
  }
  return "info";
}

std::string_view to_string(LogFormat format) noexcept { return format == LogFormat::text ? "text" : "json"; }

void set_log_level(LogLevel level) noexcept { current_level.store(level, std::memory_order_relaxed); }

void set_log_format(LogFormat format) noexcept { current_format.store(format, std::memory_order_relaxed); }

bool log_enabled(LogLevel level) noexcept {
  return static_cast<int>(level) <= static_cast<int>(current_level.load(std::memory_order_relaxed));
}

std::string format_log_line(LogFormat format, std::chrono::system_clock::time_point time,
                            LogLevel level, std::string_view message, std::span<const LogField> fields) {
  const auto stamp = timestamp(time);
  return format == LogFormat::json ? format_json(stamp, level, message, fields)
                                           : format_text(stamp, level, message, fields);
}

void log(LogLevel level, std::string_view message, std::span<const LogField> fields) {
  if (!log_enabled(level)) return;
  const auto line = format_log_line(current_format.load(std::memory_order_relaxed), std::chrono::system_clock::now(),
                                    level, message, fields);
  const std::lock_guard lock(output_mutex);
  std::fwrite(line.data(), 1, line.size(), stderr);
}

void log(LogLevel level, std::string_view message, std::initializer_list<LogField> fields) {
  log(level, message, std::span<const LogField>(fields.begin(), fields.size()));
}

void log(LogLevel level, std::string_view message) { log(level, message, std::span<const LogField>()); }

}  // namespace director
