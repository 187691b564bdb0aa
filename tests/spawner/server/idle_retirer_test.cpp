// The idle retirer's I/O with a fake runtime (a fake is fine for a unit test of one class),
// real HTTP servers standing in for the agents' GET /users and a real unix socket standing in
// for HAProxy's stats socket (it answers `show table` with HAProxy 2.6's format). The end-to-end
// test with real HAProxy and agents is tests/e2e's.
#include "server/idle_retirer.hpp"

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

// A stats socket that answers every command with `answer` and closes, like HAProxy's.
class StatsSocket {
 public:
  StatsSocket(boost::asio::io_context& io, std::string answer)
      : path_(std::filesystem::temp_directory_path() / ("director-stats-" + std::to_string(::getpid()) + "-" +
                                                        std::to_string(counter_++) + ".sock")),
        acceptor_(io, boost::asio::local::stream_protocol::endpoint(path_.string())) {
    boost::asio::co_spawn(io, serve(std::move(answer)), director::net::log_if_thrown("stats socket"));
  }
  ~StatsSocket() {
    acceptor_.close();
    std::filesystem::remove(path_);
  }
  std::string path() const { return path_.string(); }
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
  static inline int counter_ = 0;
  std::filesystem::path path_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
};

constexpr std::string_view table_header = "# table: user_connections, type: string, size:102400, used:3\n";

struct Fixture {
  boost::asio::io_context io;
  metrics::Metrics metrics{"test"};
  FakeRuntime runtime;
  int agent_requests = 0;
  std::unique_ptr<director::net::http::HttpServer> agent;
  std::unique_ptr<StatsSocket> haproxy;
  server::RetirerSettings settings;

  Fixture() {
    for (const auto* label : {"idle", "websocket", "recent", "unknown"}) runtime.containers["vscode-" + std::string(label)] = managed_running(label);
    settings.idle.timeout = std::chrono::milliseconds(3'600'000);
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

  server::RetirementRound round() {
    server::IdleRetirer retirer(io.get_executor(), settings, runtime, metrics);
    std::optional<server::RetirementRound> result;
    boost::asio::co_spawn(io, [&]() -> boost::asio::awaitable<void> { result = co_await retirer.run_once(); },
                          director::net::log_if_thrown("test round"));
    REQUIRE(run_until(io, [&] { return result.has_value(); }));
    if (agent) agent->stop();
    return *result;
  }
};

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

