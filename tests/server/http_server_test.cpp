// The HTTP listener against a real loopback socket, with the real Checker, Resolver and SPOP
// Server behind it: a dnsmasq fixture answers for the container hosts (NXDOMAIN for unknown
// names), a listening socket stands for an alive container. Requests are raw bytes.
#include "server/http_server.hpp"

#include "config/config.hpp"
#include "metrics/metrics.hpp"
#include "server/checker.hpp"
#include "server/resolver.hpp"
#include "server/server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "asio_test_support.hpp"
#include "dns_fixture.hpp"

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;
using director::server::Checker;
using director::server::evaluate_readiness;
using director::server::HttpLimits;
using director::server::HttpServer;
using director::test::run_until_complete;
using Json = nlohmann::json;

namespace {

constexpr auto nothrow_awaitable = asio::as_tuple(asio::use_awaitable);

struct Reply {
  int status = 0;
  std::string head;  // status line and headers
  std::string body;

  // The value of header `name` (exact case as the server writes it), or empty.
  std::string header(const std::string& name) const {
    const auto at = head.find("\r\n" + name + ": ");
    if (at == std::string::npos) return {};
    const auto start = at + 4 + name.size();
    return head.substr(start, head.find("\r\n", start) - start);
  }
  Json json() const { return Json::parse(body); }
};

asio::awaitable<void> sleep_for(std::chrono::milliseconds duration) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  co_await timer.async_wait(nothrow_awaitable);
}

// Reads until the server closes (or 5 s pass) and splits the response.
asio::awaitable<Reply> read_reply(tcp::socket& socket) {
  std::string received;
  std::array<char, 65536> chunk{};
  asio::steady_timer guard(socket.get_executor(), 5s);
  guard.async_wait([&](const boost::system::error_code& error) {
    if (!error) socket.close();
  });
  for (;;) {
    const auto [error, count] = co_await socket.async_read_some(asio::buffer(chunk), nothrow_awaitable);
    received.append(chunk.data(), count);
    if (error) break;
  }
  guard.cancel();
  Reply reply;
  const auto end = received.find("\r\n\r\n");
  if (received.size() >= 12 && received.starts_with("HTTP/1.1 ")) reply.status = std::stoi(received.substr(9, 3));
  reply.head = received.substr(0, end);
  if (end != std::string::npos) reply.body = received.substr(end + 4);
  co_return reply;
}

// Sends `request` (in pieces of `piece_size` bytes when set) and reads the reply.
asio::awaitable<Reply> exchange(tcp::endpoint server, std::string request, std::size_t piece_size = 0) {
  tcp::socket socket(co_await asio::this_coro::executor);
  co_await socket.async_connect(server, asio::use_awaitable);
  if (piece_size == 0) piece_size = request.size();
  for (std::size_t at = 0; at < request.size(); at += piece_size) {
    const auto piece = std::string_view(request).substr(at, piece_size);
    co_await asio::async_write(socket, asio::buffer(piece.data(), piece.size()), nothrow_awaitable);
    if (piece_size < request.size()) co_await sleep_for(1ms);
  }
  co_return co_await read_reply(socket);
}

asio::awaitable<Reply> get(tcp::endpoint server, std::string target) {
  co_return co_await exchange(server, "GET " + target + " HTTP/1.1\r\nHost: localhost\r\n\r\n");
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
  explicit Agent(std::vector<std::string> dns_servers, HttpLimits limits = {},
                 std::chrono::milliseconds dns_timeout = 250ms)
      : container(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0)) {
    config.listen = tcp::endpoint(asio::ip::address_v4::loopback(), 0);
    config.http_listen = tcp::endpoint(asio::ip::address_v4::loopback(), 0);
    config.decision.container_port = container.local_endpoint().port();
    director::server::ResolverOptions resolver_options;
    resolver_options.servers = std::move(dns_servers);
    resolver_options.timeout = dns_timeout;
    resolver_options.tries = 1;
    resolver = std::make_unique<director::server::Resolver>(io.get_executor(), resolver_options);
    checker = std::make_unique<Checker>(io.get_executor(), config, *resolver, metrics);
    spop = std::make_unique<director::server::Server>(io, config.listen, *checker, metrics,
                                                      director::server::ConnectionLimits{});
    http = std::make_unique<HttpServer>(io, config.http_listen,
                                        director::server::HttpSources{config, metrics, *checker, *spop}, limits);
    spop->start();
    http->start();
  }

  tcp::endpoint endpoint() const { return http->local_endpoint(); }

  // Asks for `username` as a NOTIFY would (the answer, if deferred, is dropped).
  void decide(const std::string& username) {
    checker->decide(username, [] { return [](const director::decision::Answer&) {}; });
  }

  // Runs the io_context until no check is in flight.
  void settle() {
    run_until_complete(io, [this]() -> asio::awaitable<void> {
      while (metrics.checks_in_flight() > 0) co_await sleep_for(5ms);
    }());
  }

  Reply run_get(const std::string& target) { return run_until_complete(io, get(endpoint(), target)); }

  asio::io_context io;
  tcp::acceptor container;  // listens, never accepts: probes of it connect (alive)
  director::config::Config config;
  director::metrics::Metrics metrics{"9.9.9", std::chrono::system_clock::now()};
  std::unique_ptr<director::server::Resolver> resolver;
  std::unique_ptr<Checker> checker;
  std::unique_ptr<director::server::Server> spop;
  std::unique_ptr<HttpServer> http;
};

director::test::Dnsmasq& shared_dnsmasq() {
  static director::test::Dnsmasq dnsmasq(director::test::Dnsmasq::Options{0, true, "127.0.0.1 vscode-alive\n"});
  return dnsmasq;
}

}  // namespace

TEST_CASE("/healthz: 200, JSON, one request per connection", "[http]") {
  Agent agent({shared_dnsmasq().server()});
  const auto reply = agent.run_get("/healthz");
  CHECK(reply.status == 200);
  CHECK(reply.header("Content-Type") == "application/json");
  CHECK(reply.header("Connection") == "close");
  CHECK(reply.header("Content-Length") == std::to_string(reply.body.size()));
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
  Agent agent({"127.0.0.1:" + std::to_string(silent.local_endpoint().port())}, {}, 2000ms);
  agent.decide("slow");
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
  Agent agent({"127.0.0.1:" + std::to_string(silent.local_endpoint().port())}, {}, 20ms);

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
  const Checker::DnsHealth never{};
  const Checker::DnsHealth failed_recently{now - 5s, now - 1s};
  const Checker::DnsHealth failed_then_answered{now - 1s, now - 5s};
  const Checker::DnsHealth failed_long_ago{std::nullopt, now - 61s};
  const Checker::DnsHealth only_failures{std::nullopt, now - 10s};
  CHECK(evaluate_readiness(true, never, now, 60s).ready());
  CHECK_FALSE(evaluate_readiness(true, failed_recently, now, 60s).ready());
  CHECK(evaluate_readiness(true, failed_then_answered, now, 60s).ready());
  CHECK(evaluate_readiness(true, failed_long_ago, now, 60s).ready());
  CHECK_FALSE(evaluate_readiness(true, only_failures, now, 60s).ready());
  CHECK(evaluate_readiness(false, never, now, 60s).problems.size() == 1);
  CHECK(evaluate_readiness(false, only_failures, now, 60s).problems.size() == 2);
}

TEST_CASE("requests: GET only, paths known, request line well formed", "[http][requests]") {
  Agent agent({shared_dnsmasq().server()});
  const auto send = [&](const std::string& request) { return run_until_complete(agent.io, exchange(agent.endpoint(), request)); };

  const auto post = send("POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
  CHECK(post.status == 405);
  CHECK(post.header("Allow") == "GET");
  CHECK(send("HEAD /healthz HTTP/1.1\r\n\r\n").status == 405);
  CHECK(send("GET /nowhere HTTP/1.1\r\n\r\n").status == 404);
  CHECK(send("GET /metrics/ HTTP/1.1\r\n\r\n").status == 404);
  CHECK(send("GET /healthz HTTP/1.0\r\n\r\n").status == 200);
  CHECK(send("GET /healthz?x=1 HTTP/1.1\r\n\r\n").status == 200);
  CHECK(send("GET /healthz HTTP/2.0\r\n\r\n").status == 400);
  CHECK(send("GET  /healthz HTTP/1.1\r\n\r\n").status == 400);
  CHECK(send("GET http://x/healthz HTTP/1.1\r\n\r\n").status == 400);
  CHECK(send("garbage\r\n\r\n").status == 400);
  // Byte by byte: the end of the head is found across reads.
  CHECK(run_until_complete(agent.io, exchange(agent.endpoint(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 1)).status ==
        200);
}

TEST_CASE("requests: oversized heads are refused, 414 for the request line, 431 for headers", "[http][requests]") {
  Agent agent({shared_dnsmasq().server()});
  const auto send = [&](const std::string& request) { return run_until_complete(agent.io, exchange(agent.endpoint(), request)); };

  const auto long_target = send("GET /users?" + std::string(9000, 'a') + " HTTP/1.1\r\n\r\n");
  CHECK(long_target.status == 414);
  const auto big_headers = send("GET /healthz HTTP/1.1\r\nX-Padding: " + std::string(9000, 'p') + "\r\n\r\n");
  CHECK(big_headers.status == 431);
  CHECK_FALSE(big_headers.json().at("error").get<std::string>().empty());
  // Just within the limit: a head of exactly 8192 bytes.
  const std::string prefix = "GET /healthz HTTP/1.1\r\nX-Padding: ";
  const std::string suffix = "\r\n\r\n";
  CHECK(send(prefix + std::string(8192 - prefix.size() - suffix.size(), 'p') + suffix).status == 200);
  CHECK(send(prefix + std::string(8193 - prefix.size() - suffix.size(), 'p') + suffix).status == 431);
}

TEST_CASE("requests: a silent client is dropped at the deadline", "[http][requests]") {
  HttpLimits limits;
  limits.exchange_timeout = 200ms;
  Agent agent({shared_dnsmasq().server()}, limits);
  const auto started = std::chrono::steady_clock::now();
  const auto reply = run_until_complete(agent.io, exchange(agent.endpoint(), "GET /healthz HTTP/1.1\r\n"));
  const auto elapsed = std::chrono::steady_clock::now() - started;
  CHECK(reply.status == 0);  // closed without an answer
  CHECK(elapsed >= 180ms);
  CHECK(elapsed < 3s);
}

TEST_CASE("requests: connections beyond the cap get 503, and the cap frees up", "[http][requests]") {
  HttpLimits limits;
  limits.max_connections = 2;
  limits.exchange_timeout = 300ms;
  Agent agent({shared_dnsmasq().server()}, limits);
  const auto replies = run_until_complete(agent.io, [&]() -> asio::awaitable<std::vector<Reply>> {
    const auto executor = co_await asio::this_coro::executor;
    tcp::socket idle_1(executor);
    tcp::socket idle_2(executor);
    co_await idle_1.async_connect(agent.endpoint(), asio::use_awaitable);
    co_await idle_2.async_connect(agent.endpoint(), asio::use_awaitable);
    co_await sleep_for(50ms);  // both accepted and waiting for their request
    std::vector<Reply> out;
    out.push_back(co_await get(agent.endpoint(), "/healthz"));
    co_await sleep_for(500ms);  // the idle ones hit their deadline
    out.push_back(co_await get(agent.endpoint(), "/healthz"));
    co_return out;
  }());
  CHECK(replies.at(0).status == 503);
  CHECK(replies.at(1).status == 200);
}

TEST_CASE("the listener refuses an address it cannot bind", "[http]") {
  Agent agent({shared_dnsmasq().server()});
  CHECK_THROWS_WITH(HttpServer(agent.io, agent.endpoint(),
                               director::server::HttpSources{agent.config, agent.metrics, *agent.checker, *agent.spop}),
                    Catch::Contains("cannot listen for HTTP on 127.0.0.1:"));
}
