// libFuzzer target: the idle planner's parsers of network text (spawner/src/core/activity.hpp)
// and HAProxy's `show table` answer (common/src/net/show_table.hpp, which the agent's
// /connections reads).
//
// Input: byte 0 picks the parser (0 modulo 3: HAProxy's `show table` output, 1: an agent's
// /users page, 2: an agent's /connections page); bytes 1.. are the text. Checks:
// - show table: every line is an entry, skipped, a comment or empty (entries + skipped never
//   exceed the lines); each parsed key, escaped here as HAProxy escapes it (a reference written
//   from its output), parses back to itself and its count, alone on a line with shard= and
//   unknown fields around conn_cur=;
// - /users: a page that parses has at most `rows` labels plus skipped rows, each label 1 to 63
//   bytes, each last request at most ten years before `now` and never after it;
// - /connections: a page that parses has a cursor of lowercase hex digits, at most 2048.
#include "fuzz_check.hpp"

#include "core/activity.hpp"
#include "net/show_table.hpp"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace core = director::spawner::core;

namespace {

// HAProxy's escaping of a string key in `show table` (2.6 and 3.2).
std::string escape_like_haproxy(std::string_view key) {
  std::string out;
  for (const char c : key) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == ' ' || c == '=' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (byte < 0x21 || byte > 0x7e) {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02X", byte);
      out += hex;
    } else {
      out += c;
    }
  }
  return out;
}

void check_show_table(std::string_view text) {
  std::size_t lines = 0;
  for (std::size_t at = 0; at <= text.size();) {
    const auto newline = text.find('\n', at);
    const auto end = newline == std::string_view::npos ? text.size() : newline;
    if (end > at) ++lines;
    if (newline == std::string_view::npos) break;
    at = newline + 1;
  }
  const auto table = director::net::parse_show_table(text);
  FUZZ_CHECK(table.connections.size() + table.skipped_lines <= lines);
  for (const auto& [key, count] : table.connections) {
    if (key.empty()) continue;  // "key= use=0": an empty key is not something HAProxy tracks
    const std::string line = "0x7f02c4053558: key=" + escape_like_haproxy(key) +
                             " use=0 exp=86399796 shard=0 conn_cur=" + std::to_string(count) + " http_req_cnt=1\n";
    const auto again = director::net::parse_show_table("# table: t, type: string, size:1, used:1\n" + line);
    FUZZ_CHECK(again.header_seen);
    FUZZ_CHECK(again.skipped_lines == 0);
    FUZZ_CHECK(again.connections.size() == 1);
    FUZZ_CHECK(again.connections.begin()->first == key);
    FUZZ_CHECK(again.connections.begin()->second == count);
  }
}

void check_agent_users(std::string_view text) {
  const auto now = core::TimePoint{} + std::chrono::hours(24 * 365 * 20);
  const auto page = core::parse_agent_users(text, now);
  if (!page) {
    FUZZ_CHECK(!page.error().message.empty());
    return;
  }
  FUZZ_CHECK(page->last_request.size() + page->skipped_rows <= page->rows);
  for (const auto& [label, seen] : page->last_request) {
    FUZZ_CHECK(!label.empty() && label.size() <= 63);
    FUZZ_CHECK(seen <= now);
    FUZZ_CHECK(now - seen <= std::chrono::hours(24 * 366 * 10));
  }
}

void check_agent_connections(std::string_view text) {
  const auto page = core::parse_agent_connections(text);
  if (!page) {
    FUZZ_CHECK(!page.error().message.empty());
    return;
  }
  FUZZ_CHECK(page->next.size() % 2 == 0 && page->next.size() <= 2048);
  for (const char c : page->next) FUZZ_CHECK((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 3 == 0) {
    check_show_table(text);
  } else if (data[0] % 3 == 1) {
    check_agent_users(text);
  } else {
    check_agent_connections(text);
  }
  return 0;
}
