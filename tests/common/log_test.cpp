// The log formatter (text and JSON lines) and level filtering: one call is one line whatever the
// field values hold, and nothing below the configured level is written.
#include "log/log.hpp"

#include "stderr_capture.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using director::test::StderrCapture;

using director::LogFormat;
using director::LogLevel;
using director::format_log_line;
using director::LogField;

// 2025-01-31T12:00:00.123Z
const auto at = std::chrono::system_clock::from_time_t(1738324800) + std::chrono::milliseconds(123);

std::string text_line(std::string_view message, std::initializer_list<LogField> fields,
                      LogLevel level = LogLevel::info) {
  return format_log_line(LogFormat::text, at, level, message, std::span<const LogField>(fields.begin(), fields.size()));
}

std::string json_line(std::string_view message, std::initializer_list<LogField> fields,
                      LogLevel level = LogLevel::info) {
  return format_log_line(LogFormat::json, at, level, message, std::span<const LogField>(fields.begin(), fields.size()));
}

// Exactly one line: ends with the only newline, every other byte printable ASCII.
bool is_one_printable_line(const std::string& line) {
  if (line.empty() || line.back() != '\n') return false;
  return std::all_of(line.begin(), line.end() - 1, [](char c) { return c >= ' ' && c < '\x7f'; });
}

// Puts the process-wide logging state back to the defaults when a test ends.
struct DefaultLogging {
  ~DefaultLogging() { director::set_log_level(director::LogLevel::info);
    director::set_log_format(director::LogFormat::text);; }
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace

TEST_CASE("text lines: timestamp, level, message, then key=value fields") {
  CHECK(text_line("user container is alive", {{"label", "jack"}, {"host", "vscode-jack"}}) ==
        "2025-01-31T12:00:00.123Z info user container is alive label=jack host=vscode-jack\n");
  CHECK(text_line("stopped", {}, LogLevel::warn) == "2025-01-31T12:00:00.123Z warn stopped\n");
  CHECK(text_line("x", {}, LogLevel::error).find(" error x\n") != std::string::npos);
  CHECK(text_line("x", {}, LogLevel::debug).find(" debug x\n") != std::string::npos);
  const auto early = format_log_line(LogFormat::text, std::chrono::system_clock::from_time_t(1738324800) +
                                                          std::chrono::milliseconds(5),
                                     LogLevel::info, "x", {});
  CHECK(early == "2025-01-31T12:00:00.005Z info x\n");
}

TEST_CASE("text lines escape hostile values: one line, no fake fields") {
  struct Case {
    std::string value;
    std::string written;
  };
  const std::vector<Case> cases = {
      {"plain", "k=plain"},
      {"", "k=\"\""},
      {"two words", "k=\"two words\""},
      {"a=b", "k=\"a=b\""},
      {"say \"hi\"", "k=\"say \\\"hi\\\"\""},
      {"line\nbreak", "k=line\\nbreak"},
      {"new\nline and space", "k=\"new\\nline and space\""},
      {"cr\rtab\t", "k=cr\\rtab\\t"},
      {std::string("nul\0byte", 8), "k=nul\\x00byte"},
      {"bell\x07" "esc\x1b[31m", "k=bell\\x07esc\\x1b[31m"},
      {"del\x7f", "k=del\\x7f"},
      {"back\\slash", "k=back\\\\slash"},
      {"caf\xc3\xa9", "k=caf\\xc3\\xa9"},
      {"jack label=admin", "k=\"jack label=admin\""},
  };
  for (const auto& c : cases) {
    const auto line = text_line("m", {{"k", c.value}});
    INFO(line);
    CHECK(line == "2025-01-31T12:00:00.123Z info m " + c.written + "\n");
    CHECK(is_one_printable_line(line));
  }
  const auto message = text_line("first\nsecond", {});
  CHECK(message == "2025-01-31T12:00:00.123Z info first\\nsecond\n");
}

TEST_CASE("JSON lines: one object per line, values exactly as given") {
  const auto line = json_line("user container is alive", {{"label", "jack"}, {"host", "vscode-jack"}});
  CHECK(line ==
        "{\"ts\":\"2025-01-31T12:00:00.123Z\",\"level\":\"info\",\"msg\":\"user container is alive\",\"label\":\"jack\","
        "\"host\":\"vscode-jack\"}\n");

  const std::vector<std::string> values = {"",
                                           "two words",
                                           "say \"hi\"",
                                           "line\nbreak\r\n",
                                           std::string("nul\0byte", 8),
                                           "esc\x1b[31m\x07\t",
                                           "back\\slash",
                                           "caf\xc3\xa9 \xd0\xb8\xd0\xb2\xd0\xb0\xd0\xbd",
                                           "{\"level\":\"error\"}"};
  for (const auto& value : values) {
    const auto written = json_line("m\n\"", {{"user", value}}, LogLevel::warn);
    INFO(written);
    CHECK(is_one_printable_line(written));  // ASCII only: non-ASCII is \u-escaped
    const auto parsed = nlohmann::json::parse(written);
    REQUIRE(parsed.is_object());
    CHECK(parsed.size() == 4);
    CHECK(parsed.at("ts") == "2025-01-31T12:00:00.123Z");
    CHECK(parsed.at("level") == "warn");
    CHECK(parsed.at("msg") == "m\n\"");
    CHECK(parsed.at("user") == value);
  }
}

TEST_CASE("JSON lines replace invalid UTF-8 and keep ts, level and msg unforgeable") {
  const auto invalid = json_line("m", {{"user", "bad\xff\xfe" "end"}});
  INFO(invalid);
  CHECK(is_one_printable_line(invalid));
  CHECK(nlohmann::json::parse(invalid).at("user") == "bad\xef\xbf\xbd\xef\xbf\xbd" "end");

  const auto colliding = json_line("real", {{"msg", "fake"}, {"level", "error"}, {"ts", "0"}});
  const auto parsed = nlohmann::json::parse(colliding);
  CHECK(parsed.at("msg") == "real");
  CHECK(parsed.at("level") == "info");
  CHECK(parsed.at("ts") == "2025-01-31T12:00:00.123Z");
  CHECK(parsed.at("field_msg") == "fake");
  CHECK(parsed.at("field_level") == "error");
  CHECK(parsed.at("field_ts") == "0");
}

TEST_CASE("levels filter: nothing below the configured level is enabled") {
  const DefaultLogging restore;
  using director::log_enabled;
  using director::set_log_level;
  CHECK(log_enabled(LogLevel::info));  // the default
  CHECK_FALSE(log_enabled(LogLevel::debug));
  set_log_level(LogLevel::error);
  CHECK(log_enabled(LogLevel::error));
  CHECK_FALSE(log_enabled(LogLevel::warn));
  CHECK_FALSE(log_enabled(LogLevel::info));
  set_log_level(LogLevel::warn);
  CHECK(log_enabled(LogLevel::warn));
  CHECK_FALSE(log_enabled(LogLevel::info));
  set_log_level(LogLevel::debug);
  CHECK(log_enabled(LogLevel::debug));
  CHECK(log_enabled(LogLevel::error));
}

TEST_CASE("log() writes one line per call to stderr, in the configured format and above the level") {
  const DefaultLogging restore;
  director::set_log_level(LogLevel::warn);
  director::set_log_format(LogFormat::json);

  StderrCapture capture;
  director::log(LogLevel::debug, "hidden debug");
  director::log(LogLevel::info, "hidden info", {{"user", "jack"}});
  director::log(LogLevel::warn, "shown warn", {{"user", "line\nbreak"}});
  director::log(LogLevel::error, "shown error");
  director::set_log_format(LogFormat::text);
  director::log(LogLevel::error, "as text", {{"k", "v"}});
  const auto lines = lines_of(capture.finish());

  REQUIRE(lines.size() == 3);
  const auto warn = nlohmann::json::parse(lines[0]);
  CHECK(warn.at("level") == "warn");
  CHECK(warn.at("msg") == "shown warn");
  CHECK(warn.at("user") == "line\nbreak");
  CHECK(nlohmann::json::parse(lines[1]).at("msg") == "shown error");
  CHECK(lines[2].find(" error as text k=v") != std::string::npos);
}

TEST_CASE("lines logged from several threads at once are never interleaved") {
  const DefaultLogging restore;
  director::set_log_format(LogFormat::json);
  constexpr int threads = 4;
  constexpr int per_thread = 200;
  StderrCapture capture;
  {
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([t] {
        const std::string padding(300, static_cast<char>('a' + t));
        for (int i = 0; i < per_thread; ++i) {
          director::log(LogLevel::info, "concurrent", {{"thread", std::to_string(t)}, {"padding", padding}});
        }
      });
    }
    for (auto& worker : workers) worker.join();
  }
  const auto lines = lines_of(capture.finish());
  REQUIRE(lines.size() == static_cast<std::size_t>(threads * per_thread));
  for (const auto& line : lines) {
    const auto parsed = nlohmann::json::parse(line, nullptr, false);
    REQUIRE_FALSE(parsed.is_discarded());
    CHECK(parsed.at("padding").get<std::string>().size() == 300);
  }
}
