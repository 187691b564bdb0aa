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
// - Shared: OpenConnectionsReader makes concurrent requests share one read, so that /connections
//   never adds more than one `show table` at a time to the runtime API sockets the fast path's
//   revocations need (HAProxy serves 10 CLI connections by default).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
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

// Reads every socket of `settings` (a copy: the coroutine owns it). Cancelled, it reads no further
// socket: those left are unreadable ("not read: the request was cancelled").
boost::asio::awaitable<OpenConnections> read_open_connections(OpenConnectionsSettings settings);

// One read_open_connections() at a time, shared by every request that comes while it runs, and
// kept for `reuse` after it ended (an unreadable result too: a socket that failed is not asked
// again at once). A flood of requests thus reads HAProxy once per `reuse` at most, and the pages
// of one idle round usually come from one read. The read runs on its own strand, not on behalf
// of one request: a request that is cancelled stops waiting, the read goes on for the others.
// Waiting requests cost a channel each; the HTTP server's connection limit bounds them. Safe to
// call from any thread.
class OpenConnectionsReader : public std::enable_shared_from_this<OpenConnectionsReader> {
 public:
  using Read = std::shared_ptr<const OpenConnections>;
  static constexpr std::chrono::milliseconds default_reuse{1000};

  static std::shared_ptr<OpenConnectionsReader> create(OpenConnectionsSettings settings,
                                                       std::chrono::milliseconds reuse = default_reuse);

  const OpenConnectionsSettings& settings() const noexcept { return settings_; }

  // The latest read if it is fresh; otherwise that of the read in progress, or of one this call
  // starts. Error: operation_aborted when the caller was cancelled while waiting.
  boost::asio::awaitable<boost::system::result<Read>> read();

  // Requests waiting for the read in progress (for tests: a cancelled one is not counted).
  std::size_t waiting();

 private:
  using Clock = std::chrono::steady_clock;
  using Waiter = boost::asio::experimental::concurrent_channel<void(boost::system::error_code, Read)>;

  OpenConnectionsReader(OpenConnectionsSettings settings, std::chrono::milliseconds reuse);
  boost::asio::awaitable<void> run_read();
  void finish(Read read);

  const OpenConnectionsSettings settings_;
  const std::chrono::milliseconds reuse_;
  std::mutex mutex_;  // guards what follows
  Read last_;
  Clock::time_point last_ended_{};
  bool reading_ = false;
  std::vector<std::shared_ptr<Waiter>> waiters_;
};

}  // namespace director::server
