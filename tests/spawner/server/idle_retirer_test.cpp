// The idle retirer's I/O with a fake runtime (a fake is fine for a unit test of one class),
// real HTTP servers standing in for the agents' GET /users and a real unix socket standing in
// for HAProxy's stats socket (it answers `show table` with HAProxy 2.6's format). The end-to-end
// test with real HAProxy and agents is tests/e2e's.
#include "server/idle_retirer.hpp"

#include "../../common/net/dns_fixture.hpp"
#include "fake_runtime.hpp"
#include "net/awaitable.hpp"
#include "net/http_server.hpp"
#include "run_until.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <array>
#include <filesystem>
#include <memory>
#include <optional>
#include <unistd.h>

namespace {

using namespace director::spawner;
using director::spawner::test::FakeRuntime;
using director::spawner::test::managed_running;
using director::spawner::test::run_until;
using Json = nlohmann::json;
using director::net::http::Request;
using director::net::http::Response;
using director::net::http::Status;

// An agent's GET /users: `seen` (label, seconds ago), paged as the agent pages.
director::net::http::Router agent_users(std::vector<std::pair<std::string, double>> seen, int* requests) {
  director::net::http::Router router;
  router.get("/users", [seen, requests](const Request& request) {
    ++*requests;
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
  return router;
}

// A stats socket that answers every command with `answer` and closes, like HAProxy's: on a unix
// socket path, or on TCP (Protocol = boost::asio::ip::tcp) at an address, as a replica's HAProxy
// listens in Kubernetes.
template <typename Protocol>
class BasicStatsSocket {
 public:
  BasicStatsSocket(boost::asio::io_context& io, typename Protocol::endpoint endpoint, std::string answer)
      : acceptor_(io, endpoint) {
    boost::asio::co_spawn(io, serve(std::move(answer)), director::net::log_if_thrown("stats socket"));
  }
  ~BasicStatsSocket() { acceptor_.close(); }
  typename Protocol::endpoint endpoint() const { return acceptor_.local_endpoint(); }
  std::vector<std::string> commands;

 private:
  boost::asio::awaitable<void> serve(std::string answer) {
    for (;;) {
      auto [accepted, socket] = co_await acceptor_.async_accept(director::net::nothrow_awaitable);
      if (accepted) co_return;
      std::string command;
      auto [read, size] = co_await boost::asio::async_read_until(socket, boost::asio::dynamic_buffer(command), '\n',
                                                                  director::net::nothrow_awaitable);
      commands.push_back(command.substr(0, size));
      co_await boost::asio::async_write(socket, boost::asio::buffer(answer), director::net::nothrow_awaitable);
    }
  }
  typename Protocol::acceptor acceptor_;
};

using TcpStatsSocket = BasicStatsSocket<boost::asio::ip::tcp>;

class StatsSocket : public BasicStatsSocket<boost::asio::local::stream_protocol> {
 public:
  StatsSocket(boost::asio::io_context& io, std::string answer)
      : BasicStatsSocket(io, endpoint_at(next_path()), std::move(answer)) {}
  ~StatsSocket() { std::filesystem::remove(path()); }
  std::string path() const { return endpoint().path(); }

 private:
  static std::string next_path() {
    return (std::filesystem::temp_directory_path() /
            ("director-stats-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++) + ".sock"))
        .string();
  }
  static boost::asio::local::stream_protocol::endpoint endpoint_at(const std::string& path) { return {path}; }
  static inline int counter_ = 0;
};

constexpr std::string_view table_header = "# table: user_connections, type: string, size:102400, used:3\n";

struct Fixture {
  boost::asio::io_context io;
  metrics::Metrics metrics{"test"};
  FakeRuntime runtime;
  // The DNS of tests that name their replicas (serve_dns); the others' resolver asks nobody.
  std::optional<director::test::Dnsmasq> dns;
  int agent_requests = 0;
  std::unique_ptr<director::net::http::HttpServer> agent;
  std::unique_ptr<StatsSocket> haproxy;
  server::RetirerSettings settings;

  Fixture() {
    for (const auto* label : {"idle", "websocket", "recent", "unknown"}) runtime.containers["vscode-" + std::string(label)] = managed_running(label);
    settings.idle.timeout = std::chrono::milliseconds(3'600'000);
    settings.check_interval = std::chrono::milliseconds(60'000);
    settings.connections_table = "user_connections";
    settings.stop_grace = std::chrono::milliseconds(10'000);
    settings.read_timeout = std::chrono::milliseconds(1000);
  }

  void serve_agent(std::vector<std::pair<std::string, double>> seen) {
    agent = std::make_unique<director::net::http::HttpServer>(
        io, boost::asio::ip::tcp::endpoint(boost::asio::ip::address_v4::loopback(), 0), "agent",
        agent_users(std::move(seen), &agent_requests));
    agent->start();
    settings.agent_urls.push_back("http://127.0.0.1:" + std::to_string(agent->local_endpoint().port()));
  }

  void serve_haproxy(std::string rows) {
    haproxy = std::make_unique<StatsSocket>(io, std::string(table_header) + rows + "\n");
    settings.haproxy_sockets.push_back(haproxy->path());
  }

  // A name resolving to the hosts file's addresses (e.g. "127.0.1.1 replicas\n127.0.1.2 replicas\n").
  void serve_dns(std::string hosts) { dns.emplace(director::test::Dnsmasq::Options{0, true, std::move(hosts)}); }

  server::RetirementRound round() {
    const boost::asio::ip::udp::endpoint nobody(boost::asio::ip::address_v4::loopback(), 1);
    director::net::Resolver resolver(io.get_executor(), director::net::ResolverOptions{{dns ? dns->endpoint() : nobody}});
    server::IdleRetirer retirer(io.get_executor(), settings, runtime, resolver, metrics);
    std::optional<server::RetirementRound> result;
    boost::asio::co_spawn(io, [&]() -> boost::asio::awaitable<void> { result = co_await retirer.run_once(); },
                          director::net::log_if_thrown("test round"));
    REQUIRE(run_until(io, [&] { return result.has_value(); }));
    if (agent) agent->stop();
    for (auto& replica : replica_agents) replica->stop();
    return *result;
  }

  // Replica `index` (0, 1, ...) at 127.0.1.<index + 1>: an agent and an HAProxy stats socket on
  // the same ports as every other replica's, as Pods behind a headless Service have them.
  std::vector<std::unique_ptr<director::net::http::HttpServer>> replica_agents;
  std::vector<std::unique_ptr<TcpStatsSocket>> replica_haproxys;
  std::array<int, 4> replica_requests{};
  std::uint16_t agent_port = 0;
  std::uint16_t haproxy_port = 0;

  void serve_replica(std::vector<std::pair<std::string, double>> seen, std::string rows) {
    const auto index = replica_agents.size();
    const auto address = boost::asio::ip::make_address("127.0.1." + std::to_string(index + 1));
    replica_agents.push_back(std::make_unique<director::net::http::HttpServer>(
        io, boost::asio::ip::tcp::endpoint(address, agent_port), "agent",
        agent_users(std::move(seen), &replica_requests.at(index))));
    replica_agents.back()->start();
    agent_port = replica_agents.back()->local_endpoint().port();
    replica_haproxys.push_back(std::make_unique<TcpStatsSocket>(
        io, boost::asio::ip::tcp::endpoint(address, haproxy_port), std::string(table_header) + rows + "\n"));
    haproxy_port = replica_haproxys.back()->endpoint().port();
  }

  // Every replica served so far, by one name each for the agents and the HAProxys.
  void name_replicas(std::string_view name) {
    settings.agent_urls.push_back("http://" + std::string(name) + ":" + std::to_string(agent_port));
    settings.haproxy_sockets.push_back(std::string(name) + ":" + std::to_string(haproxy_port));
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
  fixture.serve_agent({{"idle", 7200.0}, {"websocket", 7200.0}, {"recent", 60.0}});
  fixture.serve_haproxy(
      "0x55d0c8a7b0a0: key=idle use=0 exp=86395000 conn_cur=0 http_req_cnt=4\n"
      "0x55d0c8a7b0b0: key=websocket use=1 exp=86395000 conn_cur=1 http_req_cnt=9\n");
  const auto round = fixture.round();
  CHECK(round.complete);
  CHECK(round.running == 4);
  REQUIRE(round.retired.size() == 1);
  CHECK(round.retired[0].label == "idle");
  CHECK(fixture.runtime.stopped_ids == std::vector<std::string>{"id-idle"});
  CHECK(fixture.runtime.removes == 0);
  REQUIRE(fixture.haproxy->commands.size() == 1);
  CHECK(fixture.haproxy->commands[0] == "show table user_connections\n");
  CHECK(fixture.metrics.serialize({}).find("director_spawner_retirements_total{action=\"stop\",reason=\"idle\"} 1") !=
        std::string::npos);
}

TEST_CASE("the remove action removes the container (its volume stays: the runtime's remove never takes it)") {
  Fixture fixture;
  fixture.settings.idle.action = core::IdleAction::remove;
  fixture.serve_agent({{"idle", 7200.0}, {"websocket", 60.0}, {"recent", 60.0}});
  fixture.serve_haproxy("");
  const auto round = fixture.round();
  REQUIRE(round.retired.size() == 1);
  CHECK(fixture.runtime.removed_ids == std::vector<std::string>{"id-idle"});
}

TEST_CASE("every page of an agent's users is read") {
  Fixture fixture;
  std::vector<std::pair<std::string, double>> seen;
  for (int i = 0; i < 2500; ++i) seen.emplace_back("user" + std::to_string(i), 10.0);
  seen.emplace_back("idle", 7200.0);
  seen.emplace_back("websocket", 10.0);
  seen.emplace_back("recent", 10.0);
  fixture.serve_agent(seen);
  fixture.serve_haproxy("");
  const auto round = fixture.round();
  CHECK(fixture.agent_requests == 3);
  REQUIRE(round.retired.size() == 1);
  CHECK(round.retired[0].label == "idle");
}

TEST_CASE("an unreadable source retires nobody that round") {
  SECTION("an agent that does not answer") {
    Fixture fixture;
    fixture.serve_agent({{"idle", 7200.0}});
    fixture.settings.agent_urls.push_back("http://127.0.0.1:1");
    fixture.serve_haproxy("");
    const auto round = fixture.round();
    CHECK_FALSE(round.complete);
    CHECK(round.retired.empty());
  }
  SECTION("a stats socket that is not there") {
    Fixture fixture;
    fixture.serve_agent({{"idle", 7200.0}});
    fixture.settings.haproxy_sockets.push_back("/nonexistent/haproxy.sock");
    const auto round = fixture.round();
    CHECK_FALSE(round.complete);
    CHECK(round.retired.empty());
  }
  SECTION("a table HAProxy does not have") {
    Fixture fixture;
    fixture.serve_agent({{"idle", 7200.0}});
    fixture.haproxy = std::make_unique<StatsSocket>(fixture.io, "No such table.\n");
    fixture.settings.haproxy_sockets.push_back(fixture.haproxy->path());
    const auto round = fixture.round();
    CHECK_FALSE(round.complete);
    CHECK(round.retired.empty());
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


TEST_CASE("replicas found by name: every address is one agent and one HAProxy, activity on any one spares a user") {
  Fixture fixture;
  // Replica 1 saw "recent" long ago, replica 2 a minute ago; "websocket" has its WebSocket open
  // through replica 1's HAProxy only; "idle" is idle on both; "unknown" no agent knows (spared:
  // the spawner has just started watching).
  fixture.serve_replica({{"idle", 7200.0}, {"websocket", 7200.0}, {"recent", 7200.0}},
                        "0x1: key=idle use=0 exp=86395000 conn_cur=0 http_req_cnt=4\n"
                        "0x2: key=websocket use=1 exp=86395000 conn_cur=1 http_req_cnt=9\n");
  fixture.serve_replica({{"idle", 7300.0}, {"websocket", 7300.0}, {"recent", 60.0}},
                        "0x3: key=idle use=0 exp=86395000 conn_cur=0 http_req_cnt=1\n");
  fixture.serve_dns(hosts_for("replicas", 2));
  fixture.name_replicas("replicas");
  const auto round = fixture.round();
  CHECK(round.complete);
  REQUIRE(round.retired.size() == 1);
  CHECK(round.retired[0].label == "idle");
  CHECK(fixture.runtime.stopped_ids == std::vector<std::string>{"id-idle"});
  CHECK(fixture.replica_requests[0] == 1);
  CHECK(fixture.replica_requests[1] == 1);
  CHECK(fixture.replica_haproxys[0]->commands == std::vector<std::string>{"show table user_connections\n"});
  CHECK(fixture.replica_haproxys[1]->commands == std::vector<std::string>{"show table user_connections\n"});
}

TEST_CASE("a name of the replicas that gives no address retires nobody that round") {
  for (const bool agents_named : {true, false}) {
    DYNAMIC_SECTION((agents_named ? "the agents' name" : "the HAProxys' name") << " does not exist") {
      Fixture fixture;
      fixture.serve_replica({{"idle", 7200.0}}, "");
      fixture.serve_dns(hosts_for("replicas", 1));
      fixture.name_replicas("replicas");
      if (agents_named) {
        fixture.settings.agent_urls = {"http://gone:" + std::to_string(fixture.agent_port)};
      } else {
        fixture.settings.haproxy_sockets = {"gone:" + std::to_string(fixture.haproxy_port)};
      }
      const auto round = fixture.round();
      CHECK_FALSE(round.complete);
      CHECK(round.retired.empty());
      CHECK(counted(fixture.metrics, "director_spawner_idle_unreadable_total{source=\"dns\"} 1"));
    }
  }
  SECTION("the DNS server does not answer") {
    Fixture fixture;
    fixture.serve_replica({{"idle", 7200.0}}, "");
    fixture.name_replicas("replicas");  // no serve_dns: the resolver asks a port nobody serves
    const auto round = fixture.round();
    CHECK_FALSE(round.complete);
    CHECK(round.retired.empty());
    CHECK(fixture.replica_requests[0] == 0);
  }
}

TEST_CASE("one address of the replicas' name that answers nothing retires nobody that round") {
  Fixture fixture;
  fixture.serve_replica({{"idle", 7200.0}}, "");
  fixture.serve_replica({{"idle", 7200.0}}, "");
  fixture.serve_dns(hosts_for("replicas", 3));  // 127.0.1.3: nothing listens
  fixture.name_replicas("replicas");
  const auto round = fixture.round();
  CHECK_FALSE(round.complete);
  CHECK(round.retired.empty());
  CHECK(fixture.replica_requests[0] == 1);
  CHECK(fixture.replica_requests[1] == 1);
  CHECK(counted(fixture.metrics, "director_spawner_idle_unreadable_total{source=\"agent\"} 1"));
  CHECK(counted(fixture.metrics, "director_spawner_idle_unreadable_total{source=\"haproxy\"} 1"));
}
