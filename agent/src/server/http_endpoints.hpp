// The agent's HTTP endpoints for Prometheus, operators and the spawner: GET /metrics, /healthz,
// /readyz, /status, /users and /connections (docs/metrics.md, "HTTP endpoints", is the contract).
// Each is a plain function of a request returning a response (/connections: a coroutine, it reads
// HAProxy); net::http::HttpServer (common/src/net) serves them and owns the HTTP contract
// (limits, deadline, errors). They only read: the DecisionService under its lock, the SPOP
// server's counts, the metrics, and (/connections) this agent's own HAProxy's user_connections
// table through DIRECTOR_HAPROXY_SOCKETS.
#pragma once

#include "config/config.hpp"
#include "metrics/metrics.hpp"
#include "net/http_server.hpp"
#include "net/show_table.hpp"
#include "server/decision_service.hpp"
#include "server/event_feed.hpp"
#include "server/haproxy_invalidator.hpp"
#include "server/open_connections.hpp"
#include "server/server.hpp"

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace director::server {

// What the endpoints report on. Everything referenced must outlive the router built on it.
struct HttpSources {
  const config::Config& config;
  const metrics::Metrics& metrics;
  const DecisionService& decision_service;
  const Server& spop_server;
  decision::TimePoint started = decision::Clock::now();  // for /status's uptime
  // Readiness: DNS counts as failing while the most recent lookup failed and is at most this old.
  std::chrono::seconds dns_failure_window{60};
  // Event mode's two channels; null when not configured (DIRECTOR_EVENT_FEEDS,
  // DIRECTOR_HAPROXY_SOCKETS empty).
  const EventFeed* event_feed = nullptr;
  const HaproxyInvalidator* haproxy_invalidator = nullptr;
  // /connections: the reader of the sockets (DIRECTOR_HAPROXY_SOCKETS; none: it answers that it
  // reads none), shared by every request.
  std::shared_ptr<OpenConnectionsReader> connections = OpenConnectionsReader::create(OpenConnectionsSettings{});
};

// Why the agent is not ready; empty when it is.
struct Readiness {
  std::vector<std::string> problems;
  bool ready() const noexcept { return problems.empty(); }
};

// The /readyz rule, a pure function. Ready when the SPOP listener accepts connections and DNS is
// not failing: DNS fails while the most recent lookup of any check ended in error and is at most
// `dns_failure_window` old. No lookups at all is no evidence of failure: ready. Cheap: it reads
// what the checks recorded and sends no query of its own.
Readiness evaluate_readiness(bool spop_listening, const DecisionService::DnsHealth& dns, decision::TimePoint now,
                             std::chrono::seconds dns_failure_window);

net::http::Response metrics_endpoint(const HttpSources& sources, const net::http::Request& request);
net::http::Response healthz_endpoint(const HttpSources& sources, const net::http::Request& request);
net::http::Response readyz_endpoint(const HttpSources& sources, const net::http::Request& request);
// `user=LABEL` in the query, optional: the body also holds that cached user (null when not
// cached) with `hold_ms`, the hold an answer for it would carry now; 400 for any other query.
net::http::Response status_endpoint(const HttpSources& sources, const net::http::Request& request);
// `offset=N&limit=M` in the query, both optional: 400 with a reason for anything else.
net::http::Response users_endpoint(const HttpSources& sources, const net::http::Request& request);

// The paging query of /connections: `after=CURSOR&limit=N`, both optional, each at most once.
// CURSOR is the `next` of the previous page (the hex of its last key, lowercase).
struct ConnectionsQuery {
  static constexpr std::size_t default_limit = 1000;
  static constexpr std::size_t max_limit = net::max_connections_page;
  static constexpr std::size_t max_cursor = net::max_key_hex;

  std::string after;  // the raw key (decoded): rows with keys greater than it; empty: from the start
  std::size_t limit = default_limit;
};
// The query (without '?'); anything else is an error message for a 400.
std::variant<ConnectionsQuery, std::string> parse_connections_query(std::string_view query);

// The page of `connections` (keys in byte order) that `query` asks for, as /connections answers
// it with status 200: {"table", "sockets", "total", "connections": [{"user", "open"}], "next"}.
// `next` is null on the last page. A key that is not UTF-8 shows its bad bytes as U+FFFD (as the
// spawner stores such usernames).
std::string connections_page(const OpenConnectionsSettings& settings,
                             const std::map<std::string, std::uint64_t, std::less<>>& connections,
                             const ConnectionsQuery& query);

// Open connections per username in this agent's HAProxy (every socket of
// DIRECTOR_HAPROXY_SOCKETS, through `reader`: one read shared by concurrent requests, kept a
// second), one page: 200 with connections_page(); 503 {"error", "unreadable": [{"socket",
// "reason"}]} when any socket could not be read (the counts would be incomplete); 200 with
// "sockets": [] and no rows when no socket is configured (this agent sees no connections: the
// reader decides what that means); 400 for a bad query.
boost::asio::awaitable<net::http::Response> connections_endpoint(OpenConnectionsReader& reader,
                                                                 const net::http::Request& request);

// GET of each endpoint above, on its path.
net::http::Router http_endpoints(HttpSources sources);

}  // namespace director::server
