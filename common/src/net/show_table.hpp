// HAProxy's answer to `show table <name>` (its runtime API, net/haproxy_cli.hpp), as text: the
// one parser of that grammar. Pure: no I/O; refuses or skips anything malformed, never throws.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace director::net {

// `show table <name>` on an HAProxy stats socket (checked against HAProxy 2.6 and 3.2):
//   # table: user_connections, type: string, size:102400, used:2
//   0x55d0c8a7b0a0: key=alice use=0 exp=86395000 shard=0 conn_cur=1 http_req_cnt=4
// (2.6 prints no shard=; fields other than key= and conn_cur= are ignored, whatever they are).
// With `http-request track-sc1`, conn_cur counts the user's streams in progress: an open
// WebSocket tunnel stays counted for its whole life, a finished request on a keep-alive
// connection does not (checked on both versions).
// HAProxy escapes the key: "\ " (space), "\=", "\\", "\t", "\n", "\r" and "\xHH" for other
// bytes outside 0x21-0x7e; they are unescaped here. A `type string len 64` table keeps only the
// first 64 bytes of a longer username: such users share one entry, and the spawner's
// core::open_connections_by_label counts it for each of them (never too few connections, so
// never retired by mistake).
struct ShowTable {
  std::map<std::string, std::uint64_t, std::less<>> connections;  // key -> conn_cur
  std::size_t skipped_lines = 0;  // entry lines that did not parse (bad escape, no conn_cur=, ...)
  bool header_seen = false;       // the "# table:" line was there (an unknown table prints none)
};
// At most max_show_table_entries entries are kept; further lines count as skipped.
inline constexpr std::size_t max_show_table_entries = 1'000'000;
ShowTable parse_show_table(std::string_view text);

// Connection counts add up saturating at UINT64_MAX (a count never wraps to "none open").
constexpr std::uint64_t add_counts(std::uint64_t sum, std::uint64_t count) noexcept {
  return count > UINT64_MAX - sum ? UINT64_MAX : sum + count;
}

// A table key as the agent's /connections carries it (each row's "key", and the page cursor):
// every byte as two lowercase hex digits. Lossless whatever the bytes: a username cut at 64
// bytes may end inside a UTF-8 character, which JSON text cannot carry.
std::string key_to_hex(std::string_view key);
// The longest hex key either side accepts (keys of up to 1 KiB; HAProxy's are 64 bytes).
inline constexpr std::size_t max_key_hex = 2048;
// The most rows /connections gives a page (the agent refuses more; the spawner asks for this).
inline constexpr std::size_t max_connections_page = 10'000;
// The bytes back; nullopt for an odd length or a character other than 0-9a-f.
std::optional<std::string> key_from_hex(std::string_view hex);

}  // namespace director::net
