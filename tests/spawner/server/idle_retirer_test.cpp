// The idle retirer's I/O with a fake runtime (a fake is fine for a unit test of one class) and
// real HTTP servers standing in for the agents' GET /users and GET /connections (paged by cursor
// as the agent pages; or answering 503 as an agent whose HAProxy is unreadable). The end-to-end
// test with real HAProxy and agents is tests/e2e's (test_spawner_idle.py, test_spawner_replicas.py).
#include "server/idle_retirer.hpp"

#include "../../common/net/dns_fixture.hpp"
#include "fake_runtime.hpp"
#include "net/awaitable.hpp"
#include "net/http_server.hpp"
#include "run_until.hpp"

#include <boost/asio/co_spawn.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <array>
#include <map>
#include <memory>
#include <optional>

namespace {

using namespace director::spawner;
using director::spawner::test::FakeRuntime;
using director::spawner::test::managed_running;
using director::spawner::test::run_until;
using Json = nlohmann::json;
using director::net::http::Request;
using director::net::http::Response;
using director::net::http::Status;

// What a fake agent's GET /connections answers: its HAProxy's open connections per username,
// or 503 (unreadable), or "sockets": [] (it reads no HAProxy).
struct AgentHaproxy {
  std::map<std::string, std::uint64_t> open{};
  bool unreadable = false;
  bool no_sockets = false;
};

struct AgentRequests {
  int users = 0;
  std::vector<std::string> connections;  // the query of each /connections request
};

std::string hex(std::string_view text) {
  static constexpr std::string_view digits = "0123456789abcdef";
  std::string out;
  for (const char c : text) {
    out += digits[static_cast<unsigned char>(c) >> 4];
    out += digits[static_cast<unsigned char>(c) & 0xf];
  }
  return out;
}

// An agent's GET /users: `seen` (label, seconds ago), paged as the agent pages; and its GET
// /connections from `haproxy`, paged by the cursor `after` as the agent pages.
director::net::http::Router fake_agent(std::vector<std::pair<std::string, double>> seen, AgentHaproxy haproxy,
                                       AgentRequests* requests) {
  director::net::http::Router router;
  router.get("/users", [seen, requests](const Request& request) {
    ++requests->users;
    const auto query = director::net::http::split_target(request.target()).query;
    std::size_t offset = 0;
    std::size_t limit = 100;
    sscanf(std::string(query).c_str(), "offset=%zu&limit=%zu", &offset, &limit);
    Json users = Json::array();
    for (std::size_t i = offset; i < seen.size() && i < offset + limit; ++i) {
      users.push_back({{"label", seen[i].first}, {"last_seen_seconds_ago", seen[i].second}, {"state", "alive"}});
    }
    return director::net::http::make_response(Status::ok, "application/json",
                                              Json{{"total", seen.size()}, {"offset", offset}, {"users", users}}.dump());
  });
  router.get("/connections", [haproxy, requests](const Request& request) {
    const auto query = std::string(director::net::http::split_target(request.target()).query);
    requests->connections.push_back(query);
    if (haproxy.unreadable) {
      return director::net::http::make_response(
          Status::service_unavailable, "application/json",
          R"({"error":"cannot read HAProxy's open connections","unreadable":[{"socket":"/run/haproxy.sock","reason":"cannot connect"}]})");
    }
    std::size_t limit = 1000;
    std::string after;
    for (std::size_t at = 0; at < query.size();) {
      const auto end = std::min(query.find('&', at), query.size());
      const auto parameter = query.substr(at, end - at);
      if (parameter.starts_with("limit=")) limit = std::stoul(parameter.substr(6));
      if (parameter.starts_with("after=")) after = parameter.substr(6);
      at = end + 1;
    }
    Json rows = Json::array();
    Json next = nullptr;
    for (const auto& [user, open] : haproxy.open) {
      if (!after.empty() && hex(user) <= after) continue;  // hex keeps the byte order
      if (rows.size() == limit) {
        next = rows.back()["key"];
        break;
      }
      rows.push_back({{"key", hex(user)}, {"user", user}, {"open", open}});
    }
    Json sockets = haproxy.no_sockets ? Json::array() : Json::array({"/run/haproxy.sock"});
    return director::net::http::make_response(
        Status::ok, "application/json",
        Json{{"table", "user_connections"}, {"sockets", sockets}, {"total", haproxy.open.size()},
             {"connections", rows}, {"next", next}}
            .dump());
  });
  return router;
}

struct Fixture {
  boost::asio::io_context io;
  metrics::Metrics metrics{"test"};
  FakeRuntime runtime;
  // The DNS of tests that name their replicas (serve_dns); the others' resolver asks nobody.
  std::optional<director::test::Dnsmasq> dns;
  AgentRequests agent_requests;
  std::unique_ptr<director::net::http::HttpServer> agent;
  server::RetirerSettings settings;

  Fixture() {
    for (const auto* label : {"idle", "websocket", "recent", "unknown"}) runtime.containers["vscode-" + std::string(label)] = managed_running(label);
    settings.idle.timeout = std::chrono::milliseconds(3'600'000);
    settings.check_interval = std::chrono::milliseconds(60'000);
    settings.stop_grace = std::chrono::milliseconds(10'000);
    settings.read_timeout = std::chrono::milliseconds(1000);
  }

  void serve_agent(std::vector<std::pair<std::string, double>> seen, AgentHaproxy haproxy = {}) {
    agent = std::make_unique<director::net::http::HttpServer>(
        io, boost::asio::ip::tcp::endpoint(boost::asio::ip::address_v4::loopback(), 0), "agent",
        fake_agent(std::move(seen), std::move(haproxy), &agent_requests));
    agent->start();
    settings.agent_urls.push_back("http://127.0.0.1:" + std::to_string(agent->local_endpoint().port()));
  }

  // A name resolving to the hosts file's addresses (e.g. "127.0.1.1 replicas\n127.0.1.2 replicas\n").
  void serve_dns(std::string hosts) { dns.emplace(director::test::Dnsmasq::Options{0, true, std::move(hosts)}); }

  // `timeout` bounds the whole round; the default suits rounds of a few users.
  server::RetirementRound round(std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
    const boost::asio::ip::udp::endpoint nobody(boost::asio::ip::address_v4::loopback(), 1);
    director::net::Resolver resolver(io.get_executor(), director::net::ResolverOptions{{dns ? dns->endpoint() : nobody}});
    server::IdleRetirer retirer(io.get_executor(), settings, runtime, resolver, metrics);
    std::optional<server::RetirementRound> result;
    boost::asio::co_spawn(io, [&]() -> boost::asio::awaitable<void> { result = co_await retirer.run_once(); },
                          director::net::log_if_thrown("test round"));
    REQUIRE(run_until(io, [&] { return result.has_value(); }, timeout));
    if (agent) agent->stop();
    for (auto& replica : replica_agents) replica->stop();
    return *result;
  }

  // Replica `index` (0, 1, ...) at 127.0.1.<index + 1>: an agent (beside its HAProxy) on the same
  // port as every other replica's, as Pods behind a headless Service have it.
  std::vector<std::unique_ptr<director::net::http::HttpServer>> replica_agents;
  std::array<AgentRequests, 4> replica_requests{};
  std::uint16_t agent_port = 0;

  void serve_replica(std::vector<std::pair<std::string, double>> seen, AgentHaproxy haproxy) {
    const auto index = replica_agents.size();
    const auto address = boost::asio::ip::make_address("127.0.1." + std::to_string(index + 1));
    replica_agents.push_back(std::make_unique<director::net::http::HttpServer>(
        io, boost::asio::ip::tcp::endpoint(address, agent_port), "agent",
        fake_agent(std::move(seen), std::move(haproxy), &replica_requests.at(index))));
    replica_agents.back()->start();
    agent_port = replica_agents.back()->local_endpoint().port();
  }

  // Every replica served so far, by one name.
  void name_replicas(std::string_view name) {
    settings.agent_urls.push_back("http://" + std::string(name) + ":" + std::to_string(agent_port));
  }
};

std::string hosts_for(std::string_view name, int replicas) {
  std::string hosts;
  for (int i = 1; i <= replicas; ++i) hosts += "127.0.1." + std::to_string(i) + " " + std::string(name) + "\n";
  return hosts;
}

bool counted(const metrics::Metrics& metrics, std::string_view series) {
  return metrics.serialize({}).find(series) != std::string::npos;
}

}  // namespace

TEST_CASE("an idle user is stopped, open connections and recent requests spare the others") {
  Fixture fixture;
  fixture.serve_agent({{"idle", 7200.0}, {"websocket", 7200.0}, {"recent", 60.0}}, {.open = {{"websocket", 1}}});
  const auto round = fixture.round();
  CHECK(round.complete);
  CHECK(round.running == 4);
  REQUIRE(round.retired.size() == 1);
  CHECK(round.retired[0].label == "idle");
  CHECK(fixture.runtime.stopped_ids == std::vector<std::string>{"id-idle"});
  CHECK(fixture.runtime.removes == 0);
  CHECK(fixture.agent_requests.connections == std::vector<std::string>{"limit=10000"});
  CHECK(fixture.metrics.serialize({}).find("director_spawner_retirements_total{action=\"stop\",reason=\"idle\"} 1") !=
        std::string::npos);
}

TEST_CASE("the remove action removes the container (its volume stays: the runtime's remove never takes it)") {
  Fixture fixture;
  fixture.settings.idle.action = core::IdleAction::remove;
  fixture.serve_agent({{"idle", 7200.0}, {"websocket", 60.0}, {"recent", 60.0}});
  const auto round = fixture.round();
  REQUIRE(round.retired.size() == 1);
  CHECK(fixture.runtime.removed_ids == std::vector<std::string>{"id-idle"});
}

TEST_CASE("every page of an agent's users and connections is read") {
  Fixture fixture;
  std::vector<std::pair<std::string, double>> seen;
  AgentHaproxy haproxy;
  for (int i = 0; i < 25'000; ++i) {
    seen.emplace_back("user" + std::to_string(i), 7200.0);
    haproxy.open["user" + std::to_string(i)] = 1;
  }
  seen.resize(2500);
  seen.emplace_back("idle", 7200.0);
  seen.emplace_back("websocket", 7200.0);
  seen.emplace_back("recent", 10.0);
  haproxy.open["websocket"] = 2;  // after every "user..." key: on the last page
  fixture.serve_agent(seen, haproxy);
  // Pages of 10,000 rows take seconds to make and parse in a ThreadSanitizer build on a busy
  // CI machine (3.4 s for the round on an idle one): this test is about paging, not speed.
  fixture.settings.read_timeout = std::chrono::milliseconds(30'000);
  const auto round = fixture.round(std::chrono::milliseconds(60'000));
  CHECK(fixture.agent_requests.users == 3);
  REQUIRE(fixture.agent_requests.connections.size() == 3);
  CHECK(fixture.agent_requests.connections[1].starts_with("limit=10000&after="));
  REQUIRE(round.retired.size() == 1);
  CHECK(round.retired[0].label == "idle");
}

TEST_CASE("an unreadable source retires nobody that round") {
  SECTION("an agent that does not answer") {
    Fixture fixture;
    fixture.serve_agent({{"idle", 7200.0}});
    fixture.settings.agent_urls.push_back("http://127.0.0.1:1");
    const auto round = fixture.round();
    CHECK_FALSE(round.complete);
    CHECK(round.retired.empty());
    CHECK(counted(fixture.metrics, "director_spawner_idle_unreadable_total{source=\"agent\"} 1"));
  }
  SECTION("an agent that cannot read its HAProxy (503)") {
    Fixture fixture;
    fixture.serve_agent({{"idle", 7200.0}}, {.unreadable = true});
    const auto round = fixture.round();
    CHECK_FALSE(round.complete);
    CHECK(round.retired.empty());
    CHECK(counted(fixture.metrics, "director_spawner_idle_unreadable_total{source=\"haproxy\"} 1"));
  }
  SECTION("the runtime's listing") {
    Fixture fixture;
    fixture.serve_agent({{"idle", 7200.0}});
    fixture.runtime.available = false;
    const auto round = fixture.round();
    CHECK_FALSE(round.complete);
    CHECK(fixture.runtime.stops == 0);
  }
}

TEST_CASE("an agent that reads no HAProxy is unreadable: nobody is retired") {
  Fixture fixture;
  fixture.serve_agent({{"idle", 7200.0}, {"websocket", 7200.0}, {"recent", 60.0}}, {.no_sockets = true});
  // It cannot see websocket's open WebSocket: its "no connections" is no answer.
  const auto round = fixture.round();
  CHECK_FALSE(round.complete);
  CHECK(round.retired.empty());
  CHECK(counted(fixture.metrics, "director_spawner_idle_unreadable_total{source=\"haproxy\"} 1"));
  CHECK(fixture.runtime.stops == 0);
}

TEST_CASE("replicas found by name: every address is one agent, activity on any one spares a user") {
  Fixture fixture;
  // Replica 1 saw "recent" long ago, replica 2 a minute ago; "websocket" has its WebSocket open
  // through replica 1's HAProxy only; "idle" is idle on both; "unknown" no agent knows (spared:
  // the spawner has just started watching).
  fixture.serve_replica({{"idle", 7200.0}, {"websocket", 7200.0}, {"recent", 7200.0}}, {.open = {{"websocket", 1}}});
  fixture.serve_replica({{"idle", 7300.0}, {"websocket", 7300.0}, {"recent", 60.0}}, {});
  fixture.serve_dns(hosts_for("replicas", 2));
  fixture.name_replicas("replicas");
  const auto round = fixture.round();
  CHECK(round.complete);
  REQUIRE(round.retired.size() == 1);
  CHECK(round.retired[0].label == "idle");
  CHECK(fixture.runtime.stopped_ids == std::vector<std::string>{"id-idle"});
  CHECK(fixture.replica_requests[0].users == 1);
  CHECK(fixture.replica_requests[1].users == 1);
  CHECK(fixture.replica_requests[0].connections.size() == 1);
  CHECK(fixture.replica_requests[1].connections.size() == 1);
}

TEST_CASE("a name of the replicas that gives no address retires nobody that round") {
  SECTION("the agents' name does not exist") {
    Fixture fixture;
    fixture.serve_replica({{"idle", 7200.0}}, {});
    fixture.serve_dns(hosts_for("replicas", 1));
    fixture.settings.agent_urls = {"http://gone:" + std::to_string(fixture.agent_port)};
    const auto round = fixture.round();
    CHECK_FALSE(round.complete);
    CHECK(round.retired.empty());
    CHECK(counted(fixture.metrics, "director_spawner_idle_unreadable_total{source=\"dns\"} 1"));
  }
  SECTION("the DNS server does not answer") {
    Fixture fixture;
    fixture.serve_replica({{"idle", 7200.0}}, {});
    fixture.name_replicas("replicas");  // no serve_dns: the resolver asks a port nobody serves
    const auto round = fixture.round();
    CHECK_FALSE(round.complete);
    CHECK(round.retired.empty());
    CHECK(fixture.replica_requests[0].users == 0);
  }
}

TEST_CASE("one address of the replicas' name that answers nothing retires nobody that round") {
  Fixture fixture;
  fixture.serve_replica({{"idle", 7200.0}}, {});
  fixture.serve_replica({{"idle", 7200.0}}, {.unreadable = true});
  fixture.serve_dns(hosts_for("replicas", 3));  // 127.0.1.3: nothing listens
  fixture.name_replicas("replicas");
  const auto round = fixture.round();
  CHECK_FALSE(round.complete);
  CHECK(round.retired.empty());
  CHECK(fixture.replica_requests[0].users == 1);
  CHECK(fixture.replica_requests[1].users == 1);
  CHECK(counted(fixture.metrics, "director_spawner_idle_unreadable_total{source=\"agent\"} 1"));
  CHECK(counted(fixture.metrics, "director_spawner_idle_unreadable_total{source=\"haproxy\"} 1"));
}
