// The idle planner's inputs, as text from the network: HAProxy's `show table` output (open
// connections per username) and the agents' /users pages (last request per label). Pure
// parsers: the I/O layer (server/) reads the stats sockets and the agents and bounds what it
// reads; these refuse or skip anything malformed and never throw.
#pragma once

#include "core/container.hpp"

#include <boost/system/result.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace director::spawner::core {

// `show table <name>` on an HAProxy stats socket (checked against HAProxy 2.6 and 3.2):
//   # table: user_connections, type: string, size:102400, used:2
//   0x55d0c8a7b0a0: key=alice use=0 exp=86395000 shard=0 conn_cur=1 http_req_cnt=4
// (2.6 prints no shard=; fields other than key= and conn_cur= are ignored, whatever they are).
// With `http-request track-sc1`, conn_cur counts the user's streams in progress: an open
// WebSocket tunnel stays counted for its whole life, a finished request on a keep-alive
// connection does not (checked on both versions).
// HAProxy escapes the key: "\ " (space), "\=", "\\", "\t", "\n", "\r" and "\xHH" for other
// bytes outside 0x21-0x7e; they are unescaped here. A `type string len 64` table keeps only the
// first 64 bytes of a longer username: such users share one entry, and open_connections_by_label
// counts it for each of them (never too few connections, so never retired by mistake).
struct ShowTable {
  std::map<std::string, std::uint64_t, std::less<>> connections;  // key -> conn_cur
  std::size_t skipped_lines = 0;  // entry lines that did not parse (bad escape, no conn_cur=, ...)
  bool header_seen = false;       // the "# table:" line was there (an unknown table prints none)
};
// At most max_show_table_entries entries are kept; further lines count as skipped.
inline constexpr std::size_t max_show_table_entries = 1'000'000;
ShowTable parse_show_table(std::string_view text);

// One page of an agent's GET /users?offset=N&limit=M (docs/metrics.md "HTTP endpoints"):
// {"total":N,"offset":0,"users":[{"label":"alice","last_seen_seconds_ago":1.234,...},...]}.
struct AgentUsersPage {
  std::uint64_t total = 0;   // users the agent knows: the I/O layer pages until offset + rows >= total
  std::uint64_t offset = 0;
  std::size_t rows = 0;      // rows in this page, parsed or skipped
  std::size_t skipped_rows = 0;  // rows without a label or a usable last_seen_seconds_ago
  std::map<std::string, TimePoint, std::less<>> last_request;  // label -> now - last_seen_seconds_ago
};
struct ParseError {
  std::string message;
};
[[noreturn]] void throw_exception_from_error(const ParseError& error, const boost::source_location& location);
// A body that is not such an object (not JSON, nested deeper than 32, no total/offset/users of
// the right types) is an error; bad rows are skipped.
boost::system::result<AgentUsersPage, ParseError> parse_agent_users(std::string_view json, TimePoint now);

// Merges one agent's (or page's) last requests into `into`, keeping the most recent per label.
void merge_last_request(std::map<std::string, TimePoint, std::less<>>& into,
                        const std::map<std::string, TimePoint, std::less<>>& from);

// Open connections per label for the running containers, from HAProxy's per-username counts
// (summed over HAProxy processes by the caller): each container's username (its user label),
// cut to `key_length` bytes as the table cuts it, looked up in `by_username`.
std::map<std::string, std::uint64_t, std::less<>> open_connections_by_label(
    const std::vector<ContainerStatus>& running,
    const std::map<std::string, std::uint64_t, std::less<>>& by_username, std::size_t key_length = 64);

}  // namespace director::spawner::core
