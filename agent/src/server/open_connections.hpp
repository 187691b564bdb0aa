// The agent's read-only view of its HAProxy's open connections per user, for the spawner's idle
// retirement (GET /connections, http_endpoints.hpp): `show table <table> data.conn_cur gt 0` on
// every socket of DIRECTOR_HAPROXY_SOCKETS (net::haproxy_command, one command a socket, nothing
// written), parsed by net::parse_show_table and summed per key over the sockets.
//
// Contract:
// - A socket that cannot be read (no connection, timeout, an answer over max_bytes, no such table
//   in HAProxy: no "# table:" line) is listed in `unreadable` with why; so is an answer that only
//   looks complete: entries withheld (a socket below level operator), a line that did not parse,
//   no closing empty line. The counts are then incomplete and the caller must not take them for
//   "no connections".
// - Bounded: the sockets are read one after the other, all within `timeout` (a socket reached
//   after it reads as a timeout), each answer at most `max_bytes`.
#pragma once

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace director::server {

struct OpenConnectionsSettings {
  std::vector<std::string> sockets;  // DIRECTOR_HAPROXY_SOCKETS, as parse_stats_socket reads them
  // The stick table haproxy/haproxy.cfg tracks each user's streams in (track-sc1; conn_cur).
  std::string table = "user_connections";
  // All the sockets' exchanges together; below the HTTP layer's exchange deadline (5 s), so that
  // /connections still answers in time.
  std::chrono::milliseconds timeout{3000};
  // One answer: rows of users with open connections only (32 MiB: 200k rows of 64-byte keys).
  std::size_t max_bytes = 32 * 1024 * 1024;
};

struct UnreadableSocket {
  std::string socket;
  std::string reason;
};

struct OpenConnections {
  std::map<std::string, std::uint64_t, std::less<>> by_key;  // conn_cur > 0, summed over the sockets
  std::vector<UnreadableSocket> unreadable;
};

// Reads every socket of `settings` (a copy: the coroutine owns it).
boost::asio::awaitable<OpenConnections> read_open_connections(OpenConnectionsSettings settings);

}  // namespace director::server
