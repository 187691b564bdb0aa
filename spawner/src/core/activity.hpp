// The idle planner's inputs, as text from the network: the agents' /users pages (last request
// per label) and /connections pages (their HAProxy's open connections per username). Pure
// parsers: the I/O layer (server/) reads the agents and bounds what it reads; these refuse or
// skip anything malformed and never throw.
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

// One page of an agent's GET /connections?after=CURSOR&limit=N (docs/metrics.md "HTTP
// endpoints"): {"table":"user_connections","sockets":["/run/haproxy.sock"],"total":1,
// "connections":[{"key":"616c696365","user":"alice","open":2}],"next":null}; "key" is the table
// key's bytes in lowercase hex (net::key_to_hex), what is matched; "user" is for humans. Unlike /users, a bad row makes the
// whole page an error: a row skipped could be a user's open WebSocket.
struct AgentConnectionsPage {
  std::size_t sockets = 0;  // the HAProxy sockets the agent read; 0: it reads no HAProxy
  std::map<std::string, std::uint64_t, std::less<>> connections;  // key bytes -> open (summed if repeated)
  std::string next;  // the cursor of the next page (lowercase hex, at most net::max_key_hex digits); empty: the last page
};
// A body that is not such an object (not JSON, nested deeper than 32, fields missing or of the
// wrong types, a row without a hex key and an unsigned open, a next that is not such a
// cursor) is an error.
boost::system::result<AgentConnectionsPage, ParseError> parse_agent_connections(std::string_view json);

// Merges one agent's (or page's) last requests into `into`, keeping the most recent per label.
void merge_last_request(std::map<std::string, TimePoint, std::less<>>& into,
                        const std::map<std::string, TimePoint, std::less<>>& from);

// Sums one agent's (or page's) open connections per username into `into` (saturating).
void add_connections(std::map<std::string, std::uint64_t, std::less<>>& into,
                     const std::map<std::string, std::uint64_t, std::less<>>& from);

// Open connections per label for the running containers, from HAProxy's per-username counts
// (summed over HAProxy processes by the caller): each container's username (its user label),
// cut to `key_length` bytes as the table cuts it, looked up in `by_username`.
std::map<std::string, std::uint64_t, std::less<>> open_connections_by_label(
    const std::vector<ContainerStatus>& running,
    const std::map<std::string, std::uint64_t, std::less<>>& by_username, std::size_t key_length = 64);

}  // namespace director::spawner::core
