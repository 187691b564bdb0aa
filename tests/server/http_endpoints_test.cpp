// The agent's HTTP endpoints as the plain functions of a request they are, routed by
// http_endpoints(), with the real DecisionService, Resolver and SPOP Server behind them: a dnsmasq
// fixture answers for the container hosts (NXDOMAIN for unknown names), a listening socket stands
// for an alive container. The HTTP layer under them is tested in tests/common/net.
#include "server/http_endpoints.hpp"

#include "config/config.hpp"
#include "metrics/metrics.hpp"
#include "net/awaitable.hpp"
#include "net/show_table.hpp"
#include "feed/feed_url.hpp"
#include "server/decision_service.hpp"
#include "server/event_feed.hpp"
#include "server/haproxy_invalidator.hpp"
#include "server/resolver.hpp"
#include "server/server.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/field.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "asio_test_support.hpp"
#include "../common/net/dns_fixture.hpp"

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;
using director::server::DecisionService;
using director::server::evaluate_readiness;
using director::test::run_until_complete;
using Json = nlohmann::json;

namespace {


// An endpoint's response, read as a client would.
struct Reply {
  int status = 0;
  std::string body;
  director::net::http::Response response;

  std::string header(std::string_view name) const { return std::string(response[name]); }
  Json json() const { return Json::parse(body); }
};

asio::awaitable<void> sleep_for(std::chrono::milliseconds duration) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  co_await timer.async_wait(director::net::nothrow_awaitable);
}

// Series name with labels -> value, from /metrics.
std::map<std::string, double> parse_metrics(const std::string& text) {
  std::map<std::string, double> samples;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line.front() == '#') continue;
    const auto space = line.rfind(' ');
    samples[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return samples;
}

// The agent's parts on one io_context, as main.cpp assembles them.
struct Agent {
  explicit Agent(std::vector<std::string> dns_servers, std::chrono::milliseconds dns_timeout = 250ms)
      : container(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0)) {
    config.listen = tcp::endpoint(asio::ip::address_v4::loopback(), 0);
    config.http_listen = tcp::endpoint(asio::ip::address_v4::loopback(), 0);
    config.decision.container_port = container.local_endpoint().port();
    config.dns.servers = std::move(dns_servers);
    config.dns.timeout = dns_timeout;
    config.dns.tries = 1;
    resolver = std::make_unique<director::net::Resolver>(io.get_executor(),
                                                         director::server::resolver_options(config.dns));
    decision_service = std::make_unique<DecisionService>(io.get_executor(), config, *resolver, metrics);
    spop = std::make_unique<director::server::Server>(io, config.listen, *decision_service, metrics,
                                                      director::server::ConnectionLimits{});
    router = director::server::http_endpoints({config, metrics, *decision_service, *spop});
    spop->start();
  }

  // Serves the endpoints with event mode's channels (either may be null), as main.cpp does.
  void serve_channels(const director::server::EventFeed* event_feed,
                      const director::server::HaproxyInvalidator* haproxy_invalidator) {
    director::server::HttpSources sources{config, metrics, *decision_service, *spop};
    sources.event_feed = event_feed;
    sources.haproxy_invalidator = haproxy_invalidator;
    router = director::server::http_endpoints(sources);
  }

  // Asks for `username` as a NOTIFY would (the answer, if deferred, is dropped).
  void decide(const std::string& username) {
    decision_service->decide(username, false, [] { return [](const director::decision::Answer&) {}; });
  }

  // Runs the io_context until no check is in flight.
  void settle() {
    run_until_complete(io, [this]() -> asio::awaitable<void> {
      while (metrics.checks_in_flight() > 0) co_await sleep_for(5ms);
    }());
  }

  // Runs the io_context for `duration`: checks in flight make progress.
  void run_for(std::chrono::milliseconds duration) { run_until_complete(io, sleep_for(duration)); }

  // GET `target`, answered by the router on the test's thread.
  Reply run_get(const std::string& target) const {
    const director::net::http::Request request(director::net::http::Method::get, target, 11);
    auto response = router.route(request);
    return Reply{static_cast<int>(response.result_int()), response.body(), std::move(response)};
  }

  asio::io_context io;
  tcp::acceptor container;  // listens, never accepts: probes of it connect (alive)
  director::config::Config config;
  director::metrics::Metrics metrics{"9.9.9", std::chrono::system_clock::now()};
  std::unique_ptr<director::net::Resolver> resolver;
  std::unique_ptr<DecisionService> decision_service;
  std::unique_ptr<director::server::Server> spop;
  director::net::http::Router router;
};

director::test::Dnsmasq& shared_dnsmasq() {
  static director::test::Dnsmasq dnsmasq(director::test::Dnsmasq::Options{0, true, "127.0.0.1 vscode-alive\n"});
  return dnsmasq;
}

// The spawner's GET /events as the agent sees it: every subscriber gets `snapshot` (one NDJSON
// line), then nothing until the test ends (heartbeats are not needed within a test's seconds).
struct FeedServer {
  FeedServer(asio::io_context& io, std::string snapshot_line)
      : snapshot(std::move(snapshot_line)),
        quiet(io, asio::steady_timer::time_point::max()),
        http(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0), "feed", routes()) {
    http.start();
  }
  ~FeedServer() {
    quiet.cancel();
    http.stop();
  }

  director::net::http::Router routes() {
    director::net::http::Router router;
    router.stream("/events", [this](const director::net::http::Request&) {
      return director::net::http::StreamResponse{
          director::net::http::make_response(director::net::http::Status::ok, "application/x-ndjson", ""),
          [this](director::net::http::StreamWriter& writer) -> asio::awaitable<void> {
            if (!co_await writer.write(snapshot)) co_return;
            co_await quiet.async_wait(director::net::nothrow_awaitable);
          }};
    });
    return router;
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(http.local_endpoint().port()) + "/events"; }

  std::string snapshot;
  asio::steady_timer quiet;  // cancelled when the server goes: the streams end
  director::net::http::HttpServer http;
};

// An EventFeed into the agent's DecisionService, as main.cpp wires it.
std::unique_ptr<director::server::EventFeed> event_feed_into(Agent& agent, const std::vector<std::string>& urls) {
  std::vector<director::feed::FeedUrl> parsed;
  for (const auto& url : urls) parsed.push_back(*director::feed::parse_feed_url(url));
  director::server::EventFeedCallbacks callbacks;
  auto& service = *agent.decision_service;
  callbacks.on_snapshot = [&service](director::decision::FeedId feed, director::feed::Containers containers) {
    service.on_feed_snapshot(feed, std::move(containers));
  };
  callbacks.on_lost = [&service](director::decision::FeedId feed) { service.on_feed_lost(feed); };
  return std::make_unique<director::server::EventFeed>(agent.io.get_executor(), std::move(parsed),
                                                       std::move(callbacks));
}

// A port on 127.0.0.1 that nothing listens on (bound, then closed).
std::uint16_t closed_port() {
  asio::io_context scratch;
  tcp::acceptor acceptor(scratch, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  return acceptor.local_endpoint().port();
}

// Runs the agent until every feed of `feed` is connected (at most 5 s).
bool run_until_connected(Agent& agent, const director::server::EventFeed& feed) {
  for (int i = 0; i < 500; ++i) {
    const auto status = feed.status();
    if (std::all_of(status.begin(), status.end(), [](const auto& f) { return f.connected; })) return true;
    agent.run_for(10ms);
  }
  return false;
}

// Stops `feed` and runs the agent until its coroutines returned.
void stop_feed(Agent& agent, director::server::EventFeed& feed) {
  feed.stop();
  for (int i = 0; i < 500 && !feed.done(); ++i) agent.run_for(10ms);
  REQUIRE(feed.done());
}

constexpr std::string_view alive_snapshot =
    R"({"type":"snapshot","containers":[{"label":"alive","id":"c1","state":"running","health":"healthy"}]})"
    "\n";

}  // namespace

TEST_CASE("/healthz: 200, JSON", "[http]") {
  Agent agent({shared_dnsmasq().server()});
  const auto reply = agent.run_get("/healthz");
  CHECK(reply.status == 200);
  CHECK(reply.header("Content-Type") == "application/json");
  CHECK(reply.json() == Json{{"status", "ok"}});
}

TEST_CASE("/metrics: the text format, with state sampled at scrape time", "[http]") {
  Agent agent({shared_dnsmasq().server()});
  agent.decide("alive");
  agent.decide("ghost");
  agent.settle();
  const auto reply = agent.run_get("/metrics");
  CHECK(reply.status == 200);
  CHECK(reply.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8");
  const auto samples = parse_metrics(reply.body);
  CHECK(samples.at("director_users_cached") == 2);
  CHECK(samples.at(R"(director_active_users{window="5m"})") == 2);
  CHECK(samples.at(R"(director_active_users{window="15m"})") == 2);
  CHECK(samples.at("director_cache_misses_total") == 2);
  CHECK(samples.at(R"(director_dns_lookups_total{result="ok"})") == 1);
  CHECK(samples.at(R"(director_dns_lookups_total{result="no_such_host"})") == 1);
  CHECK(samples.at(R"(director_probes_total{result="ok"})") == 1);
  CHECK(samples.at("director_checks_in_flight") == 0);
  CHECK(samples.at("director_dns_lookups_in_flight") == 0);
  CHECK(samples.at("director_probes_in_flight") == 0);
  CHECK(samples.at("director_spop_connections") == 0);
  CHECK(samples.at(R"(director_build_info{version="9.9.9"})") == 1);
}

TEST_CASE("/metrics: 1000 distinct users add no series and no user appears", "[http][cardinality]") {
  Agent agent({shared_dnsmasq().server()});
  agent.decide("first");
  agent.settle();
  const auto before = agent.run_get("/metrics");
  for (int i = 0; i < 1000; ++i) agent.decide("user-" + std::to_string(i));
  agent.settle();
  const auto after = agent.run_get("/metrics");
  const auto before_samples = parse_metrics(before.body);
  const auto after_samples = parse_metrics(after.body);
  CHECK(after_samples.size() == before_samples.size());
  for (const auto& [series, value] : before_samples) CHECK(after_samples.count(series) == 1);
  CHECK(after_samples.at("director_users_cached") == 1001);
  CHECK(after.body.find("user-") == std::string::npos);
  CHECK(after.body.find("vscode-") == std::string::npos);
}

TEST_CASE("/status: version, uptime, effective configuration and counts", "[http]") {
  Agent agent({shared_dnsmasq().server()});
  agent.decide("ghost");
  agent.settle();
  const auto reply = agent.run_get("/status");
  REQUIRE(reply.status == 200);
  const auto status = reply.json();
  CHECK(status.at("version") == director::config::version());
  CHECK(status.at("uptime_seconds").get<double>() >= 0);
  CHECK(status.at("configuration").at("container_host_prefix") == "vscode");
  CHECK(status.at("configuration").at("http_listen") == "127.0.0.1:0");
  CHECK(status.at("counts") == Json{{"users_cached", 1}, {"spop_connections", 0}, {"checks_in_flight", 0},
                                    {"decisions", 0}});
}

TEST_CASE("/status: TTL mode without feeds or HAProxy sockets, and why", "[http][liveness]") {
  Agent agent({shared_dnsmasq().server()});
  const auto liveness = agent.run_get("/status").json().at("liveness");
  CHECK(liveness.at("mode") == "ttl");
  CHECK_THAT(liveness.at("why").get<std::string>(), Catch::Contains("DIRECTOR_EVENT_FEEDS"));
  CHECK(liveness.at("covered_users") == 0);
  CHECK(liveness.at("feeds").empty());
  CHECK(liveness.at("haproxy").at("invalidation") == false);
  CHECK_THAT(liveness.at("haproxy").at("why").get<std::string>(), Catch::Contains("DIRECTOR_HAPROXY_SOCKETS"));
  CHECK(liveness.at("haproxy").at("sockets").empty());
  const auto samples = parse_metrics(agent.run_get("/metrics").body);
  CHECK(samples.at("director_liveness_mode") == 0);
  CHECK(samples.at("director_event_feeds_configured") == 0);
  CHECK(samples.at("director_haproxy_runtime_reachable") == 0);
}

TEST_CASE("/status and /metrics: event mode while every feed is connected, a feed down is named",
          "[http][liveness]") {
  Agent agent({shared_dnsmasq().server()});
  FeedServer spawner(agent.io, std::string(alive_snapshot));

  SECTION("one feed, connected: events, the label covered, and a user checked since is event-covered") {
    auto feed = event_feed_into(agent, {spawner.url()});
    agent.serve_channels(feed.get(), nullptr);
    feed->start();
    REQUIRE(run_until_connected(agent, *feed));
    agent.decide("alive");
    agent.settle();

    const auto status = agent.run_get("/status?user=alive").json();
    const auto& liveness = status.at("liveness");
    CHECK(liveness.at("mode") == "events");
    CHECK(liveness.at("why") == "every event feed is connected");
    CHECK(liveness.at("covered_users") == 1);
    REQUIRE(liveness.at("feeds").size() == 1);
    const auto& row = liveness.at("feeds").at(0);
    CHECK(row.at("url") == spawner.url());
    CHECK(row.at("connected") == true);
    CHECK(row.at("labels") == 1);
    CHECK(row.at("since_seconds_ago").get<double>() >= 0);
    CHECK(status.at("user").at("label") == "alive");
    CHECK(status.at("user").at("state") == "alive");
    CHECK(status.at("user").at("event_covered") == true);
    CHECK(agent.run_get("/users").json().at("users").at(0).at("event_covered") == true);
    // No HAProxy socket to take a long hold back: DIRECTOR_FAST_PATH_HOLD (500 ms) from the check.
    const auto short_hold = status.at("user").at("hold_ms").get<long long>();
    CHECK(short_hold > 0);
    CHECK(short_hold <= 500);
    // Every HAProxy socket reachable (the invalidator's report): up to the label's re-check point
    // (5/8 to 3/4 of the 1-minute backstop after the check).
    agent.decision_service->on_haproxy_reachability(true);
    const auto long_hold = agent.run_get("/status?user=alive").json().at("user").at("hold_ms").get<long long>();
    const auto refresh_point =
        std::chrono::duration_cast<std::chrono::milliseconds>(agent.config.decision.event_refresh_after("alive"))
            .count();
    CHECK(long_hold > refresh_point - 5'000);
    CHECK(long_hold <= refresh_point);
    agent.decision_service->on_haproxy_reachability(false);
    CHECK(agent.run_get("/status?user=alive").json().at("user").at("hold_ms").get<long long>() <= 500);

    const auto samples = parse_metrics(agent.run_get("/metrics").body);
    CHECK(samples.at("director_liveness_mode") == 1);
    CHECK(samples.at("director_event_feeds_configured") == 1);
    CHECK(samples.at("director_event_feeds_connected") == 1);
    CHECK(samples.at("director_covered_users") == 1);
    CHECK(samples.at(R"(director_event_feed_messages_total{type="snapshot"})") == 1);
    stop_feed(agent, *feed);
  }
  SECTION("a second feed that cannot connect: TTL mode, and why names it") {
    const auto down = "http://127.0.0.1:" + std::to_string(closed_port()) + "/events";
    auto feed = event_feed_into(agent, {spawner.url(), down});
    agent.serve_channels(feed.get(), nullptr);
    feed->start();
    agent.run_for(300ms);
    const auto liveness = agent.run_get("/status").json().at("liveness");
    CHECK(liveness.at("mode") == "ttl");
    CHECK_THAT(liveness.at("why").get<std::string>(), Catch::Contains("feed 1 (" + down + ")"));
    REQUIRE(liveness.at("feeds").size() == 2);
    CHECK(liveness.at("feeds").at(0).at("connected") == true);
    CHECK(liveness.at("feeds").at(1).at("connected") == false);
    CHECK_FALSE(liveness.at("feeds").at(1).at("last_error").is_null());
    const auto samples = parse_metrics(agent.run_get("/metrics").body);
    CHECK(samples.at("director_liveness_mode") == 0);
    CHECK(samples.at("director_event_feeds_connected") == 1);
    CHECK(samples.at("director_event_feed_reconnects_total") >= 1);
    stop_feed(agent, *feed);
  }
}

TEST_CASE("/status and /metrics: an HAProxy socket nobody listens on is unreachable", "[http][liveness]") {
  Agent agent({shared_dnsmasq().server()});
  director::server::HaproxyInvalidatorSettings settings;
  settings.sockets = {"127.0.0.1:" + std::to_string(closed_port())};
  director::server::HaproxyInvalidator invalidator(agent.io.get_executor(), settings);
  agent.serve_channels(nullptr, &invalidator);
  invalidator.start();
  agent.run_for(200ms);
  const auto haproxy = agent.run_get("/status").json().at("liveness").at("haproxy");
  CHECK(haproxy.at("invalidation") == false);
  REQUIRE(haproxy.at("sockets").size() == 1);
  CHECK(haproxy.at("sockets").at(0).at("socket") == settings.sockets.front());
  CHECK(haproxy.at("sockets").at(0).at("reachable") == false);
  CHECK_FALSE(haproxy.at("sockets").at(0).at("last_error").is_null());
  const auto samples = parse_metrics(agent.run_get("/metrics").body);
  CHECK(samples.at("director_haproxy_runtime_reachable") == 0);
  CHECK(samples.at(R"(director_haproxy_runtime_sockets{state="unreachable"})") == 1);
  invalidator.stop();
  for (int i = 0; i < 300 && invalidator.running(); ++i) agent.run_for(10ms);
  CHECK_FALSE(invalidator.running());
}

TEST_CASE("/status?user=LABEL: the cached user and its hold, null when not cached, 400 for anything else", "[http][liveness]") {
  Agent agent({shared_dnsmasq().server()});
  agent.decide("ghost");
  agent.settle();
  const auto ghost = agent.run_get("/status?user=ghost").json().at("user");
  CHECK(ghost.at("label") == "ghost");
  CHECK(ghost.at("state") == "not_alive");
  CHECK(ghost.at("event_covered") == false);
  CHECK(ghost.at("hold_ms") == 0);  // not alive: HAProxy would not reuse the answer
  CHECK(agent.run_get("/status?user=nobody").json().at("user").is_null());
  // Alive in TTL mode: what is left of DIRECTOR_FAST_PATH_HOLD (500 ms) since the check.
  agent.decide("alive");
  agent.settle();
  const auto hold = agent.run_get("/status?user=alive").json().at("user").at("hold_ms").get<long long>();
  CHECK(hold > 0);
  CHECK(hold <= 500);
  CHECK_FALSE(agent.run_get("/users").json().at("users").at(0).contains("hold_ms"));  // /status's only
  CHECK_FALSE(agent.run_get("/status").json().contains("user"));
  for (const std::string& query : std::vector<std::string>{"user=", "user=Ghost", "user=a%20b", "label=ghost", "user=ghost&x=1",
                                  "user=" + std::string(64, 'a')}) {
    CAPTURE(query);
    const auto reply = agent.run_get("/status?" + query);
    CHECK(reply.status == 400);
    CHECK_FALSE(reply.json().at("error").get<std::string>().empty());
  }
}

TEST_CASE("/users: most recently used first, with state, reason and ages", "[http][users]") {
  Agent agent({shared_dnsmasq().server()});
  agent.decide("alive");
  agent.decide("ghost");
  agent.settle();
  const auto reply = agent.run_get("/users");
  REQUIRE(reply.status == 200);
  const auto page = reply.json();
  CHECK(page.at("total") == 2);
  CHECK(page.at("offset") == 0);
  REQUIRE(page.at("users").size() == 2);
  const auto& ghost = page["users"][0];
  CHECK(ghost.at("label") == "ghost");
  CHECK(ghost.at("host") == "vscode-ghost");
  CHECK(ghost.at("address").is_null());
  CHECK(ghost.at("state") == "not_alive");
  CHECK(ghost.at("reason") == "no-such-host");
  CHECK(ghost.at("last_probe_ms").is_null());
  CHECK(ghost.at("last_seen_seconds_ago").get<double>() >= 0);
  CHECK(ghost.at("last_checked_seconds_ago").get<double>() >= 0);
  const auto& alive = page["users"][1];
  CHECK(alive.at("label") == "alive");
  CHECK(alive.at("address") == "127.0.0.1");
  CHECK(alive.at("state") == "alive");
  CHECK(alive.at("reason") == "ok");
  CHECK(alive.at("last_probe_ms").get<double>() >= 0);
}

TEST_CASE("/users: paging and bad parameters", "[http][users]") {
  Agent agent({shared_dnsmasq().server()});
  for (int i = 0; i < 250; ++i) agent.decide("u" + std::to_string(1000 + i));
  agent.settle();

  SECTION("the default page is 100") {
    const auto page = agent.run_get("/users").json();
    CHECK(page.at("total") == 250);
    REQUIRE(page.at("users").size() == 100);
    CHECK(page["users"][0].at("label") == "u1249");
    CHECK(page["users"][99].at("label") == "u1150");
  }
  SECTION("offset and limit") {
    const auto page = agent.run_get("/users?offset=240&limit=20").json();
    CHECK(page.at("offset") == 240);
    REQUIRE(page.at("users").size() == 10);
    CHECK(page["users"][0].at("label") == "u1009");
    CHECK(page["users"][9].at("label") == "u1000");
    CHECK(agent.run_get("/users?limit=1000").json().at("users").size() == 250);
    CHECK(agent.run_get("/users?limit=0").json().at("users").empty());
    CHECK(agent.run_get("/users?offset=999999999").json().at("users").empty());
    CHECK(agent.run_get("/users?limit=5&").json().at("users").size() == 5);
  }
  SECTION("bad parameters are 400 with a reason") {
    for (const std::string query : {"limit=1001", "limit=-1", "limit=", "limit", "offset=abc", "offset=1e3",
                                    "offset=1000000000", "limit=1&limit=2", "offset=1&offset=1", "page=2",
                                    "limit=%31"}) {
      CAPTURE(query);
      const auto reply = agent.run_get("/users?" + query);
      CHECK(reply.status == 400);
      CHECK_FALSE(reply.json().at("error").get<std::string>().empty());
    }
  }
}

TEST_CASE("/users: a user whose first check is in flight is checking", "[http][users]") {
  asio::io_context scratch;
  asio::ip::udp::socket silent(scratch, asio::ip::udp::endpoint(asio::ip::address_v4::loopback(), 0));
  Agent agent({"127.0.0.1:" + std::to_string(silent.local_endpoint().port())}, 2000ms);
  agent.decide("slow");
  agent.run_for(50ms);  // the check starts and waits for DNS
  const auto user = agent.run_get("/users").json().at("users").at(0);
  CHECK(user.at("state") == "checking");
  CHECK(user.at("reason").is_null());
  CHECK(user.at("last_checked_seconds_ago").is_null());
  CHECK(agent.metrics.checks_in_flight() == 1);
  // The check waits for DNS (the server never answers): in its lookup, not yet probing.
  const auto samples = parse_metrics(agent.run_get("/metrics").body);
  CHECK(samples.at("director_checks_in_flight") == 1);
  CHECK(samples.at("director_dns_lookups_in_flight") == 1);
  CHECK(samples.at("director_probes_in_flight") == 0);
}

TEST_CASE("/readyz: ready until DNS fails or the SPOP listener stops", "[http][readyz]") {
  asio::io_context scratch;
  asio::ip::udp::socket silent(scratch, asio::ip::udp::endpoint(asio::ip::address_v4::loopback(), 0));
  Agent agent({"127.0.0.1:" + std::to_string(silent.local_endpoint().port())}, 20ms);

  SECTION("no lookup yet: ready") {
    const auto reply = agent.run_get("/readyz");
    CHECK(reply.status == 200);
    CHECK(reply.json() == Json{{"status", "ready"}});
  }
  SECTION("the last lookup failed: 503 naming DNS") {
    agent.decide("someone");
    agent.settle();
    const auto reply = agent.run_get("/readyz");
    CHECK(reply.status == 503);
    CHECK(reply.json().at("status") == "not_ready");
    CHECK_THAT(reply.json().at("problems").at(0).get<std::string>(), Catch::Contains("DNS"));
  }
  SECTION("the SPOP listener stopped: 503 naming it") {
    agent.spop->stop(0ms, [] {});
    const auto reply = agent.run_get("/readyz");
    CHECK(reply.status == 503);
    CHECK_THAT(reply.json().at("problems").at(0).get<std::string>(), Catch::Contains("SPOP"));
  }
}

TEST_CASE("readiness rule: the most recent lookup within the window decides", "[readyz]") {
  const auto now = director::decision::Clock::now();
  const DecisionService::DnsHealth never{};
  const DecisionService::DnsHealth failed_recently{now - 5s, now - 1s};
  const DecisionService::DnsHealth failed_then_answered{now - 1s, now - 5s};
  const DecisionService::DnsHealth failed_long_ago{std::nullopt, now - 61s};
  const DecisionService::DnsHealth only_failures{std::nullopt, now - 10s};
  CHECK(evaluate_readiness(true, never, now, 60s).ready());
  CHECK_FALSE(evaluate_readiness(true, failed_recently, now, 60s).ready());
  CHECK(evaluate_readiness(true, failed_then_answered, now, 60s).ready());
  CHECK(evaluate_readiness(true, failed_long_ago, now, 60s).ready());
  CHECK_FALSE(evaluate_readiness(true, only_failures, now, 60s).ready());
  CHECK(evaluate_readiness(false, never, now, 60s).problems.size() == 1);
  CHECK(evaluate_readiness(false, only_failures, now, 60s).problems.size() == 2);
}

TEST_CASE("routes: GET of each endpoint, nothing else", "[http][requests]") {
  Agent agent({shared_dnsmasq().server()});
  for (const std::string path : {"/metrics", "/healthz", "/readyz", "/status", "/users"}) {
    CAPTURE(path);
    CHECK(agent.run_get(path).status == 200);
    director::net::http::Request post(director::net::http::Method::post, path, 11);
    const auto refused = agent.router.route(post);
    CHECK(refused.result_int() == 405);
    CHECK(refused[boost::beast::http::field::allow] == "GET");
  }
  CHECK(agent.run_get("/healthz?x=1").status == 200);
  CHECK(agent.run_get("/metrics/").status == 404);
  CHECK(agent.run_get("/nowhere").status == 404);
}

TEST_CASE("/connections: its query, and pages by cursor over keys in byte order", "[http][connections]") {
  using director::server::ConnectionsQuery;
  using director::server::parse_connections_query;
  const auto parsed = [](std::string_view query) { return std::get<ConnectionsQuery>(parse_connections_query(query)); };
  CHECK(parsed("").after.empty());
  CHECK(parsed("").limit == 1000);
  CHECK(parsed("after=").after.empty());  // an empty cursor: from the start
  CHECK(parsed("limit=10000&after=61ff").after == std::string("a\xff"));
  CHECK(parsed("limit=10000&after=61ff").limit == 10000);
  for (const auto* bad : {"limit=0", "limit=10001", "limit=x", "after=6", "after=6G", "after=6A", "limit=1&limit=2",
                          "after=61&after=62", "offset=1", "after"}) {
    CAPTURE(bad);
    CHECK(std::holds_alternative<std::string>(parse_connections_query(bad)));
  }
  CHECK(std::holds_alternative<std::string>(parse_connections_query("after=" + std::string(2050, 'a'))));

  director::server::OpenConnectionsSettings settings;
  settings.sockets = {"/run/haproxy.sock"};
  // HAProxy's 64-byte key of a username whose 64th byte is the first of a two-byte character.
  const std::string cut = std::string(63, 'u') + "\xc3";
  const std::map<std::string, std::uint64_t, std::less<>> open{
      {"alice", 1}, {"bob smith", 2}, {"caf\xc3\xa9", 1}, {"bad\xff", 3}, {"zed", 4}, {cut, 6}};
  std::map<std::string, std::uint64_t> seen;
  std::map<std::string, std::uint64_t> seen_by_key;
  std::string target;
  int pages = 0;
  for (;;) {
    ConnectionsQuery query = parsed(target);
    query.limit = 2;
    const auto page = Json::parse(director::server::connections_page(settings, open, query));
    ++pages;
    CHECK(page["total"] == 6);
    CHECK(page["table"] == "user_connections");
    CHECK(page["connections"].size() <= 2);
    for (const auto& row : page["connections"]) {
      seen[row["user"].get<std::string>()] += row["open"].get<std::uint64_t>();
      const auto key = director::net::key_from_hex(row["key"].get<std::string>());
      REQUIRE(key.has_value());
      seen_by_key[*key] += row["open"].get<std::uint64_t>();
    }
    if (page["next"].is_null()) break;
    target = "after=" + page["next"].get<std::string>();
  }
  CHECK(pages == 3);
  // "key" carries every key's bytes as they are, the cut character's first byte too ...
  CHECK(seen_by_key == std::map<std::string, std::uint64_t>(open.begin(), open.end()));
  // ... "user" is text for humans: "bad\xff" and the cut are not UTF-8, their bad bytes show as U+FFFD.
  CHECK(seen == std::map<std::string, std::uint64_t>{{"alice", 1},
                                                     {"bob smith", 2},
                                                     {"caf\xc3\xa9", 1},
                                                     {"bad\xef\xbf\xbd", 3},
                                                     {"zed", 4},
                                                     {std::string(63, 'u') + "\xef\xbf\xbd", 6}});
}

TEST_CASE("/connections: routed as a GET, without HAProxy sockets it reads none", "[http][connections]") {
  Agent agent({shared_dnsmasq().server()});
  const auto reply = agent.run_get("/connections");
  CHECK(reply.status == 200);
  CHECK(reply.json()["sockets"] == Json::array());
  CHECK(agent.run_get("/connections?limit=0").status == 400);
  director::net::http::Request post(director::net::http::Method::post, "/connections", 11);
  CHECK(agent.router.route(post).result_int() == 405);
}
