// The agent's HTTP endpoints for Prometheus and operators: GET /metrics, /healthz, /readyz,
// /status and /users (docs/metrics.md, "HTTP endpoints", is the contract). Each is a plain
// function of a request returning a response; net::http::HttpServer (common/src/net) serves them
// and owns the HTTP contract (limits, deadline, errors). They only read the agent's state: the
// DecisionService under its lock, the SPOP server's counts, the metrics.
#pragma once

#include "config/config.hpp"
#include "metrics/metrics.hpp"
#include "net/http_server.hpp"
#include "server/decision_service.hpp"
#include "server/event_feed.hpp"
#include "server/haproxy_invalidator.hpp"
#include "server/server.hpp"

#include <chrono>
#include <string>
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

// GET of each endpoint above, on its path.
net::http::Router http_endpoints(HttpSources sources);

}  // namespace director::server
