// Line-oriented logging to stderr, safe from any thread. Nothing is logged per request at the
// default level: only startup, state changes and errors.
//
// Two formats (DIRECTOR_LOG_FORMAT):
//   text  2025-01-31T12:00:00.123Z info user container is alive label=jack host=vscode-jack
//   json  {"ts":"2025-01-31T12:00:00.123Z","level":"info","msg":"user container is alive","label":"jack",...}
// Field values may be hostile (they can derive from usernames): both formats escape them, so one
// call is always exactly one line. Text: backslash, control and non-ASCII bytes become \\, \n,
// \t, \r or \xHH, and a value that is empty or holds a space, '"' or '=' is double-quoted (with
// \" inside). JSON: nlohmann's escaping, ASCII only, invalid UTF-8 replaced by U+FFFD.
#pragma once

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace director {

enum class LogLevel : std::uint8_t { error, warn, info, debug };
enum class LogFormat : std::uint8_t { text, json };
// "error", "warn", "info", "debug"; "text", "json": the names the configuration accepts.
std::string_view to_string(LogLevel level) noexcept;
std::string_view to_string(LogFormat format) noexcept;

// One structured field: key=value in text, "key":"value" in JSON. Keys are fixed by the code
// (a key that would collide with ts, level or msg is written as field_<key>).
using LogField = std::pair<std::string_view, std::string_view>;

// Set at startup, before threads log (safe at any time).
void set_log_level(LogLevel level) noexcept;
void set_log_format(LogFormat format) noexcept;
bool log_enabled(LogLevel level) noexcept;

void log(LogLevel level, std::string_view message);
void log(LogLevel level, std::string_view message, std::initializer_list<LogField> fields);
void log(LogLevel level, std::string_view message, std::span<const LogField> fields);

// One line, newline included, exactly as log() writes it.
std::string format_log_line(LogFormat format, std::chrono::system_clock::time_point time,
                            LogLevel level, std::string_view message, std::span<const LogField> fields);

}  // namespace director
