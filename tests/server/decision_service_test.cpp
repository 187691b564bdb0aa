// DecisionService with its lookup replaced (DecisionService::Lookup) and real probes of loopback listeners: a
// check that throws, and many checks at once on several threads (run it under TSan:
// `ctest --preset tsan-server -R decision_service`).
#include "server/decision_service.hpp"

#include "config/config.hpp"
#include "metrics/metrics.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;
using director::decision::Answer;
using director::decision::DnsOutcome;
using director::decision::Reason;
using director::server::DecisionService;
using director::net::ResolveResult;

namespace {

// A listener on 127.0.0.1 that never accepts: connects complete in its (large) backlog.
tcp::acceptor listening(asio::io_context& io) {
  tcp::acceptor acceptor(io);
  acceptor.open(tcp::v4());
  acceptor.bind({asio::ip::address_v4::loopback(), 0});
  acceptor.listen(asio::socket_base::max_listen_connections);
  return acceptor;
}

}  // namespace

TEST_CASE("a check that throws fails: its waiter is answered and the next request checks again",
          "[decision_service]") {
  asio::io_context io;
  director::metrics::Metrics metrics("test", std::chrono::system_clock::now());
  director::config::Config config;
  config.decision.dead_ttl = 0ms;  // every request after a not-alive answer starts a new check
  int lookups = 0;
  DecisionService decision_service(
      io.get_executor(), config,
      [&lookups](std::string) -> asio::awaitable<ResolveResult> {
        if (++lookups == 1) throw std::runtime_error("lookup failed unexpectedly");
        co_return ResolveResult{DnsOutcome::no_such_host, {}, 0s};
      },
      metrics);

  std::optional<Answer> first;
  CHECK_FALSE(decision_service.decide("alice", false, [&] { return [&](const Answer& answer) { first = answer; }; }));
  io.run();
  REQUIRE(first);
  CHECK_FALSE(first->alive);
  CHECK(first->reason == Reason::dns_error);
  decision_service.inspect([](const director::decision::Director& director) {
    const auto user = director.find_user("alice");
    REQUIRE(user);
    CHECK_FALSE(user->checking);
  });

  std::optional<Answer> second;
  CHECK_FALSE(decision_service.decide("alice", false, [&] { return [&](const Answer& answer) { second = answer; }; }));
  io.restart();
  io.run();
  CHECK(lookups == 2);
  REQUIRE(second);
  CHECK(second->reason == Reason::no_such_host);
}

TEST_CASE("many checks at once on several threads", "[decision_service]") {
  constexpr int users = 400;
  constexpr int threads = 4;
  asio::io_context io(threads);
  auto work = asio::make_work_guard(io);
  auto container = listening(io);
  director::metrics::Metrics metrics("test", std::chrono::system_clock::now());
  director::config::Config config;
  config.decision.container_port = container.local_endpoint().port();
  // About as long as a loopback connect: the connect and the deadline of each probe race.
  config.probe.timeout = 1ms;
  DecisionService decision_service(
      io.get_executor(), config,
      [](std::string) -> asio::awaitable<ResolveResult> {
        co_return ResolveResult{DnsOutcome::ok, {asio::ip::address_v4::loopback()}, 0s};
      },
      metrics);

  std::vector<std::thread> runners;
  for (int i = 0; i < threads; ++i) runners.emplace_back([&io] { io.run(); });
  std::atomic<int> answered{0};
  std::atomic<int> unexpected{0};
  for (int i = 0; i < users; ++i) {
    const auto answer = decision_service.decide("user" + std::to_string(i), false, [&] {
      return [&](const Answer& late) {
        if (late.reason != Reason::ok && late.reason != Reason::timeout) ++unexpected;
        ++answered;
      };
    });
    CHECK_FALSE(answer);
  }
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (answered < users && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
  work.reset();
  io.stop();
  for (auto& runner : runners) runner.join();
  CHECK(answered == users);
  CHECK(unexpected == 0);
}


// --- event mode: feed changes, failure feedback and what HAProxy is told to forget -------------

namespace {

using director::decision::ContainerState;
using director::server::HaproxyClearing;

// Records what DecisionService asks HAProxy to forget (a fake HaproxyInvalidator).
struct FakeHaproxy {
  std::vector<std::vector<std::string>> cleared;  // each clear(keys) call
  int whole_tables = 0;                           // clear_all() calls

  HaproxyClearing clearing() {
    return {[this](std::vector<std::string> keys) { cleared.push_back(std::move(keys)); },
            [this] { ++whole_tables; }};
  }
};

// Series -> value of the metrics text, for the few series a test reads.
double sample(const director::metrics::Metrics& metrics, const std::string& series) {
  const auto text = metrics.serialize({});
  const auto at = text.find("\n" + series + " ");
  REQUIRE(at != std::string::npos);
  return std::stod(text.substr(at + series.size() + 2));
}

// A DecisionService whose lookup answers 127.0.0.1 for every host while `exists` (NXDOMAIN
// otherwise), probing a listener that never accepts (alive), connected to a FakeHaproxy.
struct EventModeService {
  explicit EventModeService(director::decision::Duration retry_interval = 250ms) : container(listening(io)) {
    config.decision.container_port = container.local_endpoint().port();
    config.decision.retry_interval = retry_interval;
    service = std::make_unique<DecisionService>(
        io.get_executor(), config,
        [this](std::string) -> asio::awaitable<ResolveResult> {
          ++lookups;
          if (!exists) co_return ResolveResult{DnsOutcome::no_such_host, {}, 0s};
          co_return ResolveResult{DnsOutcome::ok, {asio::ip::address_v4::loopback()}, 0s};
        },
        metrics);
    service->connect_haproxy(haproxy.clearing());
  }

  // Runs the checks started so far to completion.
  void settle() {
    io.restart();
    io.run();
  }

  asio::io_context io;
  tcp::acceptor container;
  director::metrics::Metrics metrics{"test", std::chrono::system_clock::now()};
  director::config::Config config;
  int lookups = 0;
  bool exists = true;
  FakeHaproxy haproxy;
  std::unique_ptr<DecisionService> service;
};

}  // namespace

TEST_CASE("a feed change starts a check and clears the label's keys in HAProxy, a lost feed clears all",
          "[decision_service]") {
  EventModeService agent;
  auto& service = *agent.service;
  std::optional<Answer> first;
  CHECK_FALSE(service.decide("alice", false, [&] { return [&](const Answer& a) { first = a; }; }));
  agent.settle();
  REQUIRE(first);
  CHECK(first->alive);
  CHECK(agent.lookups == 1);

  // A first snapshot confirming the container changes nothing: no check, nothing cleared.
  service.on_feed_snapshot(0, {{"alice", ContainerState{"c1", true, false}}});
  agent.settle();
  CHECK(agent.lookups == 1);
  CHECK(agent.haproxy.cleared.empty());
  CHECK(agent.haproxy.whole_tables == 0);
  CHECK(sample(agent.metrics, R"(director_event_feed_messages_total{type="snapshot"})") == 1);

  // The container stopped: the agent checks again at once, and HAProxy forgets alice.
  agent.exists = false;
  service.on_feed_event(0, "alice", "", ContainerState{"c1", false, false});
  agent.settle();
  CHECK(agent.lookups == 2);
  REQUIRE_FALSE(agent.haproxy.cleared.empty());
  CHECK(agent.haproxy.cleared.front() == std::vector<std::string>{"alice"});
  CHECK(sample(agent.metrics, R"(director_invalidations_total{cause="event"})") == 1);
  CHECK(sample(agent.metrics, R"(director_event_feed_messages_total{type="event"})") == 1);
  service.inspect([](const director::decision::Director& director) {
    const auto user = director.find_user("alice");
    REQUIRE(user);
    CHECK_FALSE(user->alive);
    CHECK(user->reason == Reason::no_such_host);
  });

  // The feed is lost: HAProxy may hold answers granted under events, every table is cleared.
  service.on_feed_lost(0);
  CHECK(agent.haproxy.whole_tables == 1);
}

TEST_CASE("a check that overlapped a feed change is repeated, its waiter gets the repeat's answer",
          "[decision_service]") {
  asio::io_context io;
  director::metrics::Metrics metrics("test", std::chrono::system_clock::now());
  director::config::Config config;
  int lookups = 0;
  DecisionService decision_service(
      io.get_executor(), config,
      [&](std::string) -> asio::awaitable<ResolveResult> {
        if (++lookups == 1) {
          // The first check is still resolving when the feed reports the change.
          asio::steady_timer slow(co_await asio::this_coro::executor, 50ms);
          co_await slow.async_wait(asio::use_awaitable);
        }
        co_return ResolveResult{DnsOutcome::no_such_host, {}, 0s};
      },
      metrics);
  FakeHaproxy haproxy;
  decision_service.connect_haproxy(haproxy.clearing());
  decision_service.on_feed_snapshot(0, {{"bob", ContainerState{"c2", true, false}}});

  int answers = 0;
  std::optional<Answer> answer;
  CHECK_FALSE(decision_service.decide("bob", false, [&] {
    return [&](const Answer& a) {
      ++answers;
      answer = a;
    };
  }));
  decision_service.on_feed_event(0, "bob", "", ContainerState{"c2", false, false});  // stopped, check in flight
  io.run();
  CHECK(lookups == 2);
  CHECK(answers == 1);
  REQUIRE(answer);
  CHECK(answer->reason == Reason::no_such_host);
  CHECK(decision_service.stats().rechecks == 1);
}

TEST_CASE("retry forces a fresh check, an alive container found not alive is cleared from HAProxy",
          "[decision_service]") {
  EventModeService agent(0ms);
  auto& service = *agent.service;
  CHECK_FALSE(service.decide("carol", false, [&] { return [](const Answer&) {}; }));
  agent.settle();
  // Fresh and alive: answered from the cache without retry...
  const auto cached = service.decide("carol", false, [&] { return [](const Answer&) {}; });
  REQUIRE(cached);
  CHECK(cached->alive);
  CHECK(agent.lookups == 1);

  // ... but a retry waits for a new check, which finds the container gone.
  agent.exists = false;
  std::optional<Answer> retried;
  CHECK_FALSE(service.decide("carol", true, [&] { return [&](const Answer& a) { retried = a; }; }));
  agent.settle();
  CHECK(agent.lookups == 2);
  REQUIRE(retried);
  CHECK_FALSE(retried->alive);
  CHECK(retried->hold == director::decision::Duration::zero());
  REQUIRE(agent.haproxy.cleared.size() == 1);
  CHECK(agent.haproxy.cleared.front() == std::vector<std::string>{"carol"});
  CHECK(sample(agent.metrics, R"(director_invalidations_total{cause="retry"})") == 1);
  CHECK(sample(agent.metrics, R"(director_invalidations_total{cause="not_alive"})") == 1);
}
