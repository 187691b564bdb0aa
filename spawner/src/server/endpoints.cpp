#include "server/endpoints.hpp"

#include "config/config.hpp"
#include "net/page_query.hpp"
#include "server/pages.hpp"

#include <nlohmann/json.hpp>

#include <boost/beast/http/field.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <optional>
#include <utility>

namespace director::spawner::server {
namespace {

using net::http::Request;
using net::http::Response;
using net::http::Status;
using Json = nlohmann::ordered_json;
namespace field = boost::beast::http;

constexpr std::string_view prometheus_type = "text/plain; version=0.0.4; charset=utf-8";

Response json_response(Status status, const Json& body) {
  return net::http::make_response(status, net::http::json_type, body.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n");
}

std::optional<std::string_view> header(const Request& request, std::string_view name) {
  const auto found = request.find(name);
  if (found == request.end()) return std::nullopt;
  return std::string_view(found->value().data(), found->value().size());
}

std::optional<std::string_view> header(const Request& request, field::field name) {
  const auto found = request.find(name);
  if (found == request.end()) return std::nullopt;
  return std::string_view(found->value().data(), found->value().size());
}

bool ieq(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

bool ends_with_any(std::string_view path, std::initializer_list<std::string_view> suffixes) {
  return std::any_of(suffixes.begin(), suffixes.end(), [&](std::string_view suffix) {
    return path.size() >= suffix.size() && ieq(path.substr(path.size() - suffix.size()), suffix);
  });
}

// A DNS label as the director makes them: 1 to 63 of [a-z0-9-], not starting or ending with
// '-' (the agent's username scheme guarantees this shape; a label of another shape did not
// come from the director).
bool label_shaped(std::string_view label) {
  if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
  return std::all_of(label.begin(), label.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; });
}

double seconds_with_ms(core::Clock::duration duration) {
  return static_cast<double>(std::chrono::duration_cast<std::chrono::milliseconds>(duration).count()) / 1000.0;
}

// The identity HAProxy vouches for, or why the request did not come through it.
struct Identity {
  core::UserIdentity user;
  std::string problem;       // non-empty: 403
  bool no_label = false;     // the director had no label: 503
};

Identity read_identity(const PageSources& sources, const Request& request) {
  Identity identity;
  std::size_t usernames = 0;
  const auto [first, last] = request.equal_range(username_header);
  for (auto entry = first; entry != last; ++entry) {
    ++usernames;
    identity.user.username = std::string(entry->value());
  }
  if (usernames != 1 || identity.user.username.empty()) {
    identity.problem = "it does not carry exactly one non-empty " + std::string(username_header);
    return identity;
  }
  // HAProxy sets the label and the container host together or not at all (both absent when the
  // agent is down and the username is not a DNS label): no label is the 503 "cannot place you",
  // and the host is required only with a label.
  const auto label = header(request, label_header);
  if (!label || label->empty()) {
    identity.no_label = true;
    return identity;
  }
  const auto host = header(request, container_host_header);
  if (!host || host->empty()) {
    identity.problem = "it does not carry " + std::string(container_host_header);
    return identity;
  }
  if (!label_shaped(*label)) {
    identity.problem = "its " + std::string(label_header) + " is not a DNS label";
    return identity;
  }
  identity.user.label = std::string(*label);
  if (*host != sources.service.container_host(*label)) {
    identity.problem = "its " + std::string(container_host_header) + " is not this spawner's container host for the label";
  }
  return identity;
}

bool wants_json(const Request& request) { return core::prefers_json(header(request, field::field::accept)); }

Response serve(const PageSources& sources, const Page& page) {
  sources.metrics.page_served(page.name);
  return to_response(page);
}

}  // namespace

core::RequestSignals request_signals(const Request& request) {
  core::RequestSignals signals;
  signals.method = std::string_view(request.method_string().data(), request.method_string().size());
  signals.sec_fetch_mode = header(request, "Sec-Fetch-Mode");
  signals.sec_fetch_dest = header(request, "Sec-Fetch-Dest");
  signals.accept = header(request, field::field::accept);
  signals.upgrade = request.find(field::field::upgrade) != request.end();
  constexpr std::string_view sec_fetch_prefix = "sec-fetch-";
  signals.other_sec_fetch = std::any_of(request.begin(), request.end(), [&](const auto& entry) {
    const std::string_view name(entry.name_string().data(), entry.name_string().size());
    return name.size() >= sec_fetch_prefix.size() && ieq(name.substr(0, sec_fetch_prefix.size()), sec_fetch_prefix) &&
           !ieq(name, "Sec-Fetch-Mode") && !ieq(name, "Sec-Fetch-Dest");
  });
  return signals;
}

metrics::RefusalKind classify_refusal(const Request& request) {
  if (request.find(field::field::upgrade) != request.end()) return metrics::RefusalKind::websocket;
  const auto dest = header(request, "Sec-Fetch-Dest");
  const auto mode = header(request, "Sec-Fetch-Mode");
  if (dest && !dest->empty() && !ieq(*dest, "document") && !ieq(*dest, "iframe") && !ieq(*dest, "empty")) {
    return metrics::RefusalKind::asset;  // script, style, image, font, manifest, ...
  }
  if ((dest && ieq(*dest, "empty")) || (mode && (ieq(*mode, "cors") || ieq(*mode, "same-origin"))) ||
      request.find("X-Requested-With") != request.end()) {
    return metrics::RefusalKind::xhr;
  }
  const auto path = net::http::split_target(request.target()).path;
  if (!dest && ends_with_any(path, {".js", ".mjs", ".css", ".map", ".ico", ".png", ".jpg", ".jpeg", ".gif", ".svg",
                                    ".webp", ".woff", ".woff2", ".ttf", ".webmanifest"})) {
    return metrics::RefusalKind::asset;
  }
  return metrics::RefusalKind::not_navigation;
}

Response page_endpoint(const PageSources& sources, const Request& request) {
  const auto identity = read_identity(sources, request);
  if (!identity.problem.empty()) {
    sources.metrics.wake_refused(metrics::RefusalKind::missing_identity);
    return serve(sources, forbidden_page(wants_json(request), identity.problem));
  }
  if (identity.no_label) {
    sources.metrics.wake_refused(metrics::RefusalKind::no_label);
    return serve(sources, no_label_page(wants_json(request)));
  }
  const auto path = net::http::split_target(request.target()).path;
  if (path == status_path) {
    if (request.method() != net::http::Method::get && request.method() != net::http::Method::head) {
      auto response = net::http::error_response(Status::method_not_allowed, "method not allowed (allowed: GET, HEAD)");
      response.set(field::field::allow, "GET, HEAD");
      return response;
    }
    return serve(sources, status_page(sources.service.view(identity.user.label), core::Clock::now(),
                                      sources.config.container_port));
  }
  if (path.starts_with(reserved_prefix)) return net::http::error_response(Status::not_found, "not found");

  if (core::decide_wake(request_signals(request)) != core::WakeVerdict::wake) {
    sources.metrics.wake_refused(classify_refusal(request));
    return serve(sources, refused_page(wants_json(request)));
  }

  PageContext context;
  context.target = std::string(request.target());
  context.refresh_interval = sources.config.refresh_interval;
  context.container_port = sources.config.container_port;
  if (const auto reason = header(request, reason_header)) context.director_reason = std::string(reason->substr(0, 200));

  const auto view = sources.service.wake(identity.user);
  if (view.phase == core::Phase::failed) {
    return serve(sources, failure_page(view, sources.service.logs(view.label), context));
  }
  // Unreachable only when a readiness check passed (the wake starts one otherwise), the
  // director had unreachable_grace to notice, and still sent the user here.
  if (view.phase == core::Phase::ready && view.ready_checked &&
      core::Clock::now() - *view.ready_checked >= sources.unreachable_grace) {
    sources.service.refresh_logs(view);
    return serve(sources, unreachable_page(view, sources.service.logs(view.label), context));
  }
  return serve(sources, loading_page(view, context));
}

net::http::Router page_endpoints(PageSources sources) {
  net::http::Router router;
  router.fallback([sources](const Request& request) { return page_endpoint(sources, request); });
  return router;
}

std::vector<std::string> readiness_problems(bool stopping, bool runtime_reachable, bool stream_connected) {
  std::vector<std::string> problems;
  if (stopping) problems.emplace_back("stopping: the spawner starts no more containers");
  if (!runtime_reachable) problems.emplace_back("the container runtime is not reachable");
  if (!stream_connected) problems.emplace_back("the runtime's event stream is not connected");
  return problems;
}

Response metrics_endpoint(const OperatorSources& sources, const Request& /*request*/) {
  metrics::StateSample sample;
  sample.users_by_phase = sources.service.count_by_phase();
  sample.containers_by_state = sources.service.containers_by_state();
  sample.feed_subscribers = sources.feed.subscribers();
  return net::http::make_response(Status::ok, prometheus_type, sources.metrics.serialize(sample));
}

Response healthz_endpoint(const OperatorSources& /*sources*/, const Request& /*request*/) {
  Json body;
  body["status"] = "ok";
  return json_response(Status::ok, body);
}

Response readyz_endpoint(const OperatorSources& sources, const Request& /*request*/) {
  const auto problems = readiness_problems(sources.service.stopping(), sources.watcher.runtime_reachable(),
                                             sources.watcher.stream_connected());
  Json body;
  if (problems.empty()) {
    body["status"] = "ready";
    return json_response(Status::ok, body);
  }
  body["status"] = "not_ready";
  body["problems"] = problems;
  return json_response(Status::service_unavailable, body);
}

Response status_endpoint(const OperatorSources& sources, const Request& /*request*/) {
  Json body;
  body["version"] = sources.version;
  body["uptime_seconds"] = seconds_with_ms(core::Clock::now() - sources.started);
  body["configuration"] = Json::parse(config::to_json(sources.config));
  Json runtime;
  const auto info = sources.watcher.runtime_info();
  runtime["reachable"] = sources.watcher.runtime_reachable();
  runtime["event_stream_connected"] = sources.watcher.stream_connected();
  runtime["name"] = info ? Json(info->name) : Json(nullptr);
  runtime["api_version"] = info ? Json(info->api_version) : Json(nullptr);
  body["runtime"] = std::move(runtime);
  Json phases = Json::object();
  for (const auto& [phase, count] : sources.service.count_by_phase()) phases[std::string(core::to_string(phase))] = count;
  Json counts;
  counts["users_by_phase"] = std::move(phases);
  counts["operations_in_flight"] = sources.service.operations_in_flight();
  counts["event_feed_subscribers"] = sources.feed.subscribers();
  counts["event_stream_reconnects"] = sources.metrics.event_stream_reconnects();
  body["counts"] = std::move(counts);
  return json_response(Status::ok, body);
}

Response users_endpoint(const OperatorSources& sources, const Request& request) {
  const auto parsed = net::http::parse_page_query(net::http::split_target(request.target()).query);
  if (const auto* problem = std::get_if<std::string>(&parsed)) {
    return net::http::error_response(Status::bad_request, *problem);
  }
  const auto& query = std::get<net::http::PageQuery>(parsed);
  auto views = sources.service.views();
  const auto now = core::Clock::now();
  Json users = Json::array();
  for (std::size_t i = query.offset; i < views.size() && i < query.offset + query.limit; ++i) {
    const auto& view = views[i];
    Json row;
    row["label"] = view.label;
    row["username"] = view.username;
    row["phase"] = core::to_string(view.phase);
    row["phase_seconds_ago"] = view.phase_since == core::TimePoint{} ? Json(nullptr) : Json(seconds_with_ms(now - view.phase_since));
    row["in_flight"] = view.in_flight;
    row["failure"] = view.failure ? Json(core::to_string(view.failure->kind)) : Json(nullptr);
    row["failure_message"] = view.failure ? Json(view.failure->detail) : Json(nullptr);
    if (view.container) {
      Json container;
      container["id"] = view.container->id;
      container["state"] = core::to_string(view.container->state);
      container["health"] = core::to_string(view.container->health);
      container["exit_code"] = view.container->exit_code;
      row["container"] = std::move(container);
    } else {
      row["container"] = nullptr;
    }
    users.push_back(std::move(row));
  }
  Json body;
  body["total"] = views.size();
  body["offset"] = query.offset;
  body["users"] = std::move(users);
  return json_response(Status::ok, body);
}

net::http::StreamResponse events_endpoint(const OperatorSources& sources, const Request& /*request*/) {
  // Once the spawner stops, the feed no longer changes: refused as closed (EventFeed::close
  // comes later in the stop).
  auto subscribed = sources.service.stopping() ? EventFeed::Refusal::closed : sources.feed.subscribe();
  if (!subscribed) return {net::http::error_response(Status::service_unavailable, to_string(subscribed.error())), {}};
  auto subscription = std::move(*subscribed);
  net::http::StreamResponse response;
  response.head = net::http::make_response(Status::ok, "application/x-ndjson", std::string());
  response.head.set(field::field::cache_control, "no-store");
  response.body = [subscription](net::http::StreamWriter& writer) -> boost::asio::awaitable<void> {
    while (auto line = co_await subscription->next()) {
      if (!co_await writer.write(std::move(*line))) break;
    }
  };
  return response;
}

net::http::Router operator_endpoints(OperatorSources sources) {
  net::http::Router router;
  const auto serve_with = [sources](Response (*endpoint)(const OperatorSources&, const Request&)) {
    return [sources, endpoint](const Request& request) { return endpoint(sources, request); };
  };
  router.get("/metrics", serve_with(metrics_endpoint));
  router.get("/healthz", serve_with(healthz_endpoint));
  router.get("/readyz", serve_with(readyz_endpoint));
  router.get("/status", serve_with(status_endpoint));
  router.get("/users", serve_with(users_endpoint));
  router.stream("/events", [sources](const Request& request) { return events_endpoint(sources, request); });
  return router;
}

}  // namespace director::spawner::server
