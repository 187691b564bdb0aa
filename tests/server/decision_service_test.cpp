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

