#include "server/http_endpoints.hpp"

#include "net/page_query.hpp"
#include "net/show_table.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <optional>
#include <string_view>
#include <utility>
#include <variant>

namespace director::server {

namespace {

using net::http::Request;
using net::http::Response;
using net::http::Status;
using Json = nlohmann::ordered_json;

constexpr std::string_view prometheus_type = "text/plain; version=0.0.4; charset=utf-8";

Response json_response(Status status, const Json& body) {
  return net::http::make_response(status, net::http::json_type, body.dump() + "\n");
}

// Seconds with millisecond resolution, for ages in JSON.
double seconds_with_ms(decision::Duration duration) {
  return static_cast<double>(std::chrono::duration_cast<std::chrono::milliseconds>(duration).count()) / 1000.0;
}

// Milliseconds with microsecond resolution.
double milliseconds_with_us(decision::Duration duration) {
  return static_cast<double>(std::chrono::duration_cast<std::chrono::microseconds>(duration).count()) / 1000.0;
}

// ---------------------------------------------------------------------------------------------
// Sampling the agent's state

// Cached users whose last request is within 5 and 15 minutes of `now`. Director::users() lists
// the most recently used first, and every request sets last_seen from the steady clock under the
// DecisionService's lock, so the cache is ordered by last_seen: counting stops at the first user older
// than 15 minutes. Pages grow fourfold, so a scrape costs O(users active in the last 15 minutes)
// under the DecisionService's lock, and never more than O(cached users).
struct ActiveUsers {
  std::size_t within_5m = 0;
  std::size_t within_15m = 0;
};

ActiveUsers count_active_users(const decision::Director& director, decision::TimePoint now) {
  const auto cutoff_5m = now - std::chrono::minutes(5);
  const auto cutoff_15m = now - std::chrono::minutes(15);
  ActiveUsers active;
  std::size_t page_size = 256;
  for (;;) {
    const auto page = director.users(0, page_size);
    active = {};
    bool reached_older = false;
    for (const auto& user : page) {
      if (user.last_seen < cutoff_15m) {
        reached_older = true;
        break;
      }
      ++active.within_15m;
      if (user.last_seen >= cutoff_5m) ++active.within_5m;
    }
    if (reached_older || page.size() < page_size) return active;
    page_size *= 4;
  }
}

// The event feeds' and the HAProxy sockets' state, read once per request.
struct Channels {
  std::vector<FeedStatus> feeds;
  std::vector<HaproxySocketStatus> sockets;

  std::size_t feeds_connected() const {
    return static_cast<std::size_t>(
        std::count_if(feeds.begin(), feeds.end(), [](const FeedStatus& feed) { return feed.connected; }));
  }
  std::size_t sockets_reachable() const {
    return static_cast<std::size_t>(std::count_if(sockets.begin(), sockets.end(),
                                                   [](const HaproxySocketStatus& socket) { return socket.reachable; }));
  }
  // Event mode: every configured feed connected (and at least one configured).
  bool event_mode() const { return !feeds.empty() && feeds_connected() == feeds.size(); }
  // HAProxy may hold event-covered answers long: every configured socket reachable.
  bool haproxy_invalidation() const { return !sockets.empty() && sockets_reachable() == sockets.size(); }
};

Channels read_channels(const HttpSources& sources) {
  Channels channels;
  if (sources.event_feed != nullptr) channels.feeds = sources.event_feed->status();
  if (sources.haproxy_invalidator != nullptr) channels.sockets = sources.haproxy_invalidator->status();
  return channels;
}

metrics::StateSample sample_state(const HttpSources& sources) {
  metrics::StateSample sample;
  sources.decision_service.inspect([&](const decision::Director& director) {
    sample.decisions = director.stats();
    sample.users_cached = director.size();
    const auto active = count_active_users(director, decision::Clock::now());
    sample.active_users_5m = active.within_5m;
    sample.active_users_15m = active.within_15m;
    sample.covered_users = director.covered_labels();
  });
  sample.spop_connections = sources.spop_server.connection_count();
  const auto channels = read_channels(sources);
  sample.event_feeds_configured = channels.feeds.size();
  sample.event_feeds_connected = channels.feeds_connected();
  for (const auto& feed : channels.feeds) sample.event_feed_reconnects += feed.reconnects;
  sample.haproxy_sockets_configured = channels.sockets.size();
  sample.haproxy_sockets_reachable = channels.sockets_reachable();
  return sample;
}

// Seconds from `then` to `now` on the wall clock (status times are wall-clock), >= 0.
double seconds_since(std::chrono::system_clock::time_point then, std::chrono::system_clock::time_point now) {
  return seconds_with_ms(std::max(std::chrono::system_clock::duration::zero(), now - then));
}

Json nullable_text(const std::string& text) { return text.empty() ? Json(nullptr) : Json(text); }

// /status's "liveness": which mode is in force and why, the feeds, HAProxy's sockets.
Json liveness_json(const Channels& channels, std::size_t covered_users) {
  const auto now = std::chrono::system_clock::now();
  Json liveness;
  liveness["mode"] = channels.event_mode() ? "events" : "ttl";
  if (channels.feeds.empty()) {
    liveness["why"] = "no event feed is configured (DIRECTOR_EVENT_FEEDS): every answer keeps the TTLs";
  } else if (channels.event_mode()) {
    liveness["why"] = "every event feed is connected";
  } else {
    std::string why;
    for (std::size_t i = 0; i < channels.feeds.size(); ++i) {
      const auto& feed = channels.feeds[i];
      if (feed.connected) continue;
      if (!why.empty()) why += "; ";
      why += "feed " + std::to_string(i) + " (" + feed.url + ") is not connected";
      if (!feed.last_error.empty()) why += ": " + feed.last_error;
    }
    liveness["why"] = why + ". Labels no connected feed covers keep the TTLs";
  }
  liveness["covered_users"] = covered_users;
  Json feeds = Json::array();
  for (const auto& feed : channels.feeds) {
    feeds.push_back(Json{{"url", feed.url},
                         {"connected", feed.connected},
                         {"since_seconds_ago", seconds_since(feed.since, now)},
                         {"labels", feed.labels},
                         {"reconnects", feed.reconnects},
                         {"last_error", nullable_text(feed.last_error)}});
  }
  liveness["feeds"] = std::move(feeds);

  Json haproxy;
  haproxy["invalidation"] = channels.haproxy_invalidation();
  if (channels.sockets.empty()) {
    haproxy["why"] = "no HAProxy runtime socket is configured (DIRECTOR_HAPROXY_SOCKETS): HAProxy holds alive "
                     "answers at most DIRECTOR_FAST_PATH_HOLD";
  } else if (channels.haproxy_invalidation()) {
    haproxy["why"] = "every HAProxy runtime socket is reachable";
  } else {
    haproxy["why"] = "an HAProxy runtime socket is not reachable: HAProxy holds alive answers at most "
                     "DIRECTOR_FAST_PATH_HOLD";
  }
  Json sockets = Json::array();
  for (const auto& socket : channels.sockets) {
    sockets.push_back(Json{{"socket", socket.socket},
                           {"reachable", socket.reachable},
                           {"last_error", nullable_text(socket.last_error)},
                           {"keys_cleared", socket.keys_cleared},
                           {"table_clears", socket.table_clears},
                           {"last_clear_seconds_ago",
                            socket.last_clear ? Json(seconds_since(*socket.last_clear, now)) : Json(nullptr)}});
  }
  haproxy["sockets"] = std::move(sockets);
  liveness["haproxy"] = std::move(haproxy);
  return liveness;
}

// One user, copied out of the Director under its lock.
struct UserRow {
  std::string label;
  std::string host;
  std::optional<decision::Address> address;
  bool alive = false;
  decision::Reason reason = decision::Reason::ok;
  std::optional<decision::TimePoint> last_checked;
  decision::Duration last_probe_latency{};
  decision::TimePoint last_seen{};
  bool checking = false;
  bool event_covered = false;
};

UserRow row_of(const decision::UserView& view) {
  return UserRow{std::string(view.label), std::string(view.host), view.address, view.alive, view.reason,
                 view.last_checked, view.last_probe_latency, view.last_seen, view.checking, view.event_covered};
}

Json user_json(const UserRow& user, decision::TimePoint now) {
  Json row;
  row["label"] = user.label;
  row["host"] = user.host;
  row["address"] = user.address ? Json(user.address->to_string()) : Json(nullptr);
  if (user.last_checked) {
    row["state"] = user.alive ? "alive" : "not_alive";
  } else {
    row["state"] = user.checking ? "checking" : "unknown";
  }
  row["reason"] = user.last_checked ? Json(decision::to_string(user.reason)) : Json(nullptr);
  row["last_seen_seconds_ago"] = seconds_with_ms(now - user.last_seen);
  row["last_checked_seconds_ago"] = user.last_checked ? Json(seconds_with_ms(now - *user.last_checked)) : Json(nullptr);
  // A check probes only when DNS gave an address (or a fallback): not after no-such-host or
  // dns-error.
  const bool probed = user.last_checked && user.reason != decision::Reason::no_such_host &&
                      user.reason != decision::Reason::dns_error;
  row["last_probe_ms"] = probed ? Json(milliseconds_with_us(user.last_probe_latency)) : Json(nullptr);
  row["event_covered"] = user.event_covered;
  return row;
}

}  // namespace

Readiness evaluate_readiness(bool spop_listening, const DecisionService::DnsHealth& dns, decision::TimePoint now,
                             std::chrono::seconds dns_failure_window) {
  Readiness readiness;
  if (!spop_listening) readiness.problems.emplace_back("the SPOP listener is not accepting connections");
  if (dns.last_failure && now - *dns.last_failure <= dns_failure_window &&
      (!dns.last_answer || *dns.last_answer < *dns.last_failure)) {
    const auto ago = std::chrono::duration_cast<std::chrono::seconds>(now - *dns.last_failure).count();
    readiness.problems.push_back("DNS is failing: the last lookup, " + std::to_string(ago) +
                                 " s ago, ended in error (timeout or server failure)");
  }
  return readiness;
}

Response metrics_endpoint(const HttpSources& sources, const Request& /*request*/) {
  return net::http::make_response(Status::ok, prometheus_type, sources.metrics.serialize(sample_state(sources)));
}

Response healthz_endpoint(const HttpSources& /*sources*/, const Request& /*request*/) {
  Json body;
  body["status"] = "ok";
  return json_response(Status::ok, body);
}

Response readyz_endpoint(const HttpSources& sources, const Request& /*request*/) {
  const auto readiness = evaluate_readiness(sources.spop_server.is_listening(), sources.decision_service.dns_health(),
                                            decision::Clock::now(), sources.dns_failure_window);
  Json body;
  if (readiness.ready()) {
    body["status"] = "ready";
    return json_response(Status::ok, body);
  }
  body["status"] = "not_ready";
  body["problems"] = readiness.problems;
  return json_response(Status::service_unavailable, body);
}

Response status_endpoint(const HttpSources& sources, const Request& request) {
  // `user=LABEL`: a label is what the username scheme makes, [a-z0-9-], at most 63 characters.
  const auto query = net::http::split_target(request.target()).query;
  std::optional<std::string_view> label;
  if (!query.empty()) {
    constexpr std::string_view key = "user=";
    const auto value = query.substr(std::min(key.size(), query.size()));
    const bool is_label = !value.empty() && value.size() <= 63 && std::all_of(value.begin(), value.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
    });
    if (!query.starts_with(key) || !is_label)
      return net::http::error_response(Status::bad_request, "expected no query or user=LABEL (a user's label)");
    label = value;
  }

  std::size_t users_cached = 0;
  std::size_t covered_users = 0;
  std::optional<UserRow> user;
  decision::Duration hold{};
  sources.decision_service.inspect([&](const decision::Director& director) {
    users_cached = director.size();
    covered_users = director.covered_labels();
    if (label) {
      if (const auto view = director.find_user(*label)) {
        user = row_of(*view);
        hold = director.hold_at(*label, decision::Clock::now()).value_or(decision::Duration::zero());
      }
    }
  });
  const auto now = decision::Clock::now();  // after the lock: no age is negative
  Json body;
  body["version"] = config::version();
  body["uptime_seconds"] = seconds_with_ms(now - sources.started);
  body["configuration"] = Json::parse(config::to_json(sources.config));
  Json counts;
  counts["users_cached"] = users_cached;
  counts["spop_connections"] = sources.spop_server.connection_count();
  counts["checks_in_flight"] = sources.metrics.checks_in_flight();
  counts["decisions"] = sources.metrics.decisions();
  body["counts"] = std::move(counts);
  body["liveness"] = liveness_json(read_channels(sources), covered_users);
  if (label) {
    body["user"] = user ? user_json(*user, now) : Json(nullptr);
    // The ACK's `hold` an answer for the user would carry now (0: HAProxy would not reuse it).
    if (user) body["user"]["hold_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(hold).count();
  }
  return json_response(Status::ok, body);
}

Response users_endpoint(const HttpSources& sources, const Request& request) {
  const auto parsed = net::http::parse_page_query(net::http::split_target(request.target()).query);
  if (const auto* problem = std::get_if<std::string>(&parsed)) {
    return net::http::error_response(Status::bad_request, *problem);
  }
  const auto& query = std::get<net::http::PageQuery>(parsed);

  std::size_t total = 0;
  std::vector<UserRow> rows;
  sources.decision_service.inspect([&](const decision::Director& director) {
    total = director.size();
    const auto page = director.users(query.offset, query.limit);
    rows.reserve(page.size());
    for (const auto& view : page) {
      rows.push_back(row_of(view));
    }
  });
  const auto now = decision::Clock::now();  // after the lock: no age is negative
  Json users = Json::array();
  for (const auto& row : rows) users.push_back(user_json(row, now));
  Json body;
  body["total"] = total;
  body["offset"] = query.offset;
  body["users"] = std::move(users);
  return json_response(Status::ok, body);
}

std::variant<ConnectionsQuery, std::string> parse_connections_query(std::string_view query) {
  constexpr std::string_view accepted =
      "expected after=CURSOR (the previous page's next) and limit=1..10000, each at most once";
  ConnectionsQuery parsed;
  bool seen_after = false;
  bool seen_limit = false;
  while (!query.empty()) {
    const auto end = query.find('&');
    const auto parameter = query.substr(0, end);
    query = end == std::string_view::npos ? std::string_view{} : query.substr(end + 1);
    const auto equals = parameter.find('=');
    if (equals == std::string_view::npos) return std::string(accepted);
    const auto name = parameter.substr(0, equals);
    const auto value = parameter.substr(equals + 1);
    if (name == "after" && !seen_after) {
      seen_after = true;
      if (value.size() > ConnectionsQuery::max_cursor) return std::string(accepted);
      auto after = net::key_from_hex(value);
      if (!after) return std::string(accepted);
      parsed.after = std::move(*after);
    } else if (name == "limit" && !seen_limit) {
      seen_limit = true;
      std::size_t limit = 0;
      const auto [end_of_number, error] = std::from_chars(value.data(), value.data() + value.size(), limit);
      if (error != std::errc{} || end_of_number != value.data() + value.size() || limit == 0 ||
          limit > ConnectionsQuery::max_limit) {
        return std::string(accepted);
      }
      parsed.limit = limit;
    } else {
      return std::string(accepted);
    }
  }
  return parsed;
}

std::string connections_page(const OpenConnectionsSettings& settings,
                             const std::map<std::string, std::uint64_t, std::less<>>& connections,
                             const ConnectionsQuery& query) {
  Json rows = Json::array();
  auto at = query.after.empty() ? connections.begin() : connections.upper_bound(query.after);
  std::string last;
  for (std::size_t taken = 0; at != connections.end() && taken < query.limit; ++at, ++taken) {
    // "key": the table key's bytes, lossless (what the spawner matches); "user": for humans.
    rows.push_back(Json{{"key", net::key_to_hex(at->first)}, {"user", at->first}, {"open", at->second}});
    last = at->first;
  }
  Json body;
  body["table"] = settings.table;
  body["sockets"] = settings.sockets;
  body["total"] = connections.size();
  body["connections"] = std::move(rows);
  if (at == connections.end()) {
    body["next"] = nullptr;
  } else {
    body["next"] = net::key_to_hex(last);
  }
  return body.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
}

boost::asio::awaitable<Response> connections_endpoint(OpenConnectionsReader& reader, const Request& request) {
  const auto parsed = parse_connections_query(net::http::split_target(request.target()).query);
  if (const auto* problem = std::get_if<std::string>(&parsed)) {
    co_return net::http::error_response(Status::bad_request, *problem);
  }
  const auto& query = std::get<ConnectionsQuery>(parsed);
  const auto& settings = reader.settings();
  const auto shared = co_await reader.read();
  // Cancelled (the exchange's deadline): nobody reads this answer.
  if (!shared) co_return net::http::error_response(Status::service_unavailable, "cancelled");
  const auto& read = **shared;
  if (!read.unreadable.empty()) {
    Json body;
    body["error"] = "cannot read HAProxy's open connections (table " + settings.table +
                    "): the counts would be incomplete";
    Json unreadable = Json::array();
    for (const auto& socket : read.unreadable) {
      unreadable.push_back(Json{{"socket", socket.socket}, {"reason", socket.reason}});
    }
    body["unreadable"] = std::move(unreadable);
    co_return net::http::make_response(Status::service_unavailable, net::http::json_type,
                                       body.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n");
  }
  co_return net::http::make_response(Status::ok, net::http::json_type,
                                     connections_page(settings, read.by_key, query));
}

net::http::Router http_endpoints(HttpSources sources) {
  net::http::Router router;
  const auto serve = [sources](Response (*endpoint)(const HttpSources&, const Request&)) {
    return [sources, endpoint](const Request& request) { return endpoint(sources, request); };
  };
  router.get("/metrics", serve(metrics_endpoint));
  router.get("/healthz", serve(healthz_endpoint));
  router.get("/readyz", serve(readyz_endpoint));
  router.get("/status", serve(status_endpoint));
  router.get("/users", serve(users_endpoint));
  router.get_async("/connections",
                   [reader = sources.connections](const Request& request) {
                     return connections_endpoint(*reader, request);
                   });
  return router;
}

}  // namespace director::server
