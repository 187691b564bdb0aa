// The spawner's HTTP endpoints, as plain functions of a request (net::http::HttpServer serves
// them and owns the HTTP contract: limits, deadline, Connection: close).
//
// Pages listener (HAProxy's spawner backend; plan.md "HAProxy -> spawner"), every path:
//   - the director's headers are required: exactly one non-empty X-Forwarded-Preferred-Username
//     and X-Director-Container-Host equal to <prefix>-<label>[.<domain>] for X-Director-Label;
//     else 403 (page "not through the director"). Without X-Director-Label: 503 "the director
//     cannot place you right now", Retry-After, no wake.
//   - /.container-director/status: the user's phase as JSON; never wakes (exempt from the policy).
//   - any other /.container-director/ path: 404.
//   - anything else: the wake policy (core::decide_wake); refused -> 503 + Retry-After (JSON or
//     HTML by Accept); a navigation wakes the user's container and gets the loading page, the
//     failure page, or the "running but not reachable" page (a readiness check passed more than
//     unreachable_grace ago, yet the director sent the user here; a ready user whose readiness
//     no recent check confirmed is checked again: core::LifecycleSettings::ready_check_valid_for).
// Operator listener (http_listen): GET /metrics, /healthz, /readyz, /status, /users (paged like
// the agent's), and /events (the agents' feed, server/event_feed.hpp; 503 at its subscriber cap).
#pragma once

#include "config/config.hpp"
#include "core/wake_policy.hpp"
#include "metrics/metrics.hpp"
#include "net/http_server.hpp"
#include "server/event_feed.hpp"
#include "server/event_watcher.hpp"
#include "server/spawn_service.hpp"

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace director::spawner::server {

inline constexpr std::string_view username_header = "X-Forwarded-Preferred-Username";
inline constexpr std::string_view label_header = "X-Director-Label";
inline constexpr std::string_view container_host_header = "X-Director-Container-Host";
inline constexpr std::string_view reason_header = "X-Director-Reason";

// What the pages listener needs. Everything referenced must outlive the router.
struct PageSources {
  const config::Config& config;
  SpawnService& service;
  metrics::Metrics& metrics;
  std::chrono::milliseconds unreachable_grace{5000};
};

// The request's wake signals (headers as core::RequestSignals reads them; views into `request`).
core::RequestSignals request_signals(const net::http::Request& request);
// Why a request the wake policy refused is not a navigation, for the metrics.
metrics::RefusalKind classify_refusal(const net::http::Request& request);

net::http::Response page_endpoint(const PageSources& sources, const net::http::Request& request);
// Every path to page_endpoint.
net::http::Router page_endpoints(PageSources sources);

// What the operator endpoints report on.
struct OperatorSources {
  const config::Config& config;
  std::string version;
  const SpawnService& service;
  const EventWatcher& watcher;
  EventFeed& feed;
  const metrics::Metrics& metrics;
  core::TimePoint started = core::Clock::now();
};

// Why the spawner is not ready (stopping, runtime unreachable, event stream down); empty when ready.
std::vector<std::string> readiness_problems(bool stopping, bool runtime_reachable, bool stream_connected);

net::http::Response metrics_endpoint(const OperatorSources& sources, const net::http::Request& request);
net::http::Response healthz_endpoint(const OperatorSources& sources, const net::http::Request& request);
net::http::Response readyz_endpoint(const OperatorSources& sources, const net::http::Request& request);
net::http::Response status_endpoint(const OperatorSources& sources, const net::http::Request& request);
// `offset=N&limit=M`, both optional (default 0 and 100, limit at most 1000).
net::http::Response users_endpoint(const OperatorSources& sources, const net::http::Request& request);

net::http::StreamResponse events_endpoint(const OperatorSources& sources, const net::http::Request& request);

net::http::Router operator_endpoints(OperatorSources sources);

}  // namespace director::spawner::server
