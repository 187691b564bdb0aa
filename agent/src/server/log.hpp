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

#include "config/config.hpp"

#include <chrono>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace director::server {

// One structured field: key=value in text, "key":"value" in JSON. Keys are fixed by the code
// (a key that would collide with ts, level or msg is written as field_<key>).
using LogField = std::pair<std::string_view, std::string_view>;

// Level and format from the configuration; call at startup, before threads log.
void configure_logging(const config::Config& config) noexcept;
void set_log_level(config::LogLevel level) noexcept;
void set_log_format(config::LogFormat format) noexcept;
bool log_enabled(config::LogLevel level) noexcept;

void log(config::LogLevel level, std::string_view message);
void log(config::LogLevel level, std::string_view message, std::initializer_list<LogField> fields);
void log(config::LogLevel level, std::string_view message, std::span<const LogField> fields);

// One line, newline included, exactly as log() writes it.
std::string format_log_line(config::LogFormat format, std::chrono::system_clock::time_point time,
                            config::LogLevel level, std::string_view message, std::span<const LogField> fields);

}  // namespace director::server
