// The event watcher against a fake runtime (a fake is fine for a unit test of one class; the
// real event stream is DockerRuntime's, tested against Podman in tests/spawner/runtime).
#include "server/event_watcher.hpp"

#include "fake_runtime.hpp"
#include "net/awaitable.hpp"
#include "run_until.hpp"

#include <boost/asio/co_spawn.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

namespace {

using namespace director::spawner;
using director::spawner::test::FakeRuntime;
using director::spawner::test::managed_running;
using director::spawner::test::run_until;

struct Fixture {
  boost::asio::io_context io;
  director::net::Resolver resolver{io.get_executor(), director::net::ResolverOptions{{boost::asio::ip::udp::endpoint(boost::asio::ip::address_v4::loopback(), 9)}}};
  metrics::Metrics metrics{"test"};
  FakeRuntime runtime;
  server::SpawnService service{io.get_executor(), core::LifecycleSettings{}, server::SpawnSettings{}, runtime, resolver, metrics};
  server::EventFeed feed;
  server::WatchSettings settings{std::chrono::milliseconds(10), std::chrono::milliseconds(40), std::chrono::milliseconds(60'000), 100};
  std::unique_ptr<server::EventWatcher> watcher;

  server::EventWatcher& start() {
    watcher = std::make_unique<server::EventWatcher>(io.get_executor(), runtime, service, feed, metrics, settings);
    watcher->start();
    return *watcher;
  }
  ~Fixture() {
    if (watcher) {
      watcher->stop();
      test::run_for(io, std::chrono::milliseconds(20));
    }
  }
};

// The first line a new feed subscriber reads: the snapshot of what the watcher published.
nlohmann::json first_feed_line(Fixture& fixture) {
  auto subscription = fixture.feed.subscribe().value();
  std::optional<std::string> first;
  boost::asio::co_spawn(fixture.io, [&]() -> boost::asio::awaitable<void> { first = co_await subscription->next(); },
                        director::net::log_if_thrown("test reader"));
  REQUIRE(run_until(fixture.io, [&] { return first.has_value(); }));
  return nlohmann::json::parse(*first);
}

}  // namespace

TEST_CASE("the watcher lists, then follows the events, the feed's first line is the snapshot") {
  Fixture fixture;
  fixture.runtime.containers["vscode-alice"] = managed_running("alice");
  fixture.runtime.events = {core::ContainerEvent{core::EventKind::died, "id-alice", "alice", core::Health::none, 137, {}}};
  auto& watcher = fixture.start();
  REQUIRE(run_until(fixture.io, [&] { return watcher.stream_connected(); }));
  CHECK(watcher.runtime_reachable());
  REQUIRE(watcher.runtime_info());
  CHECK(watcher.runtime_info()->api_version == "1.41");
  CHECK(fixture.runtime.lists == 1);

  const auto line = first_feed_line(fixture);
  CHECK(line["type"] == "snapshot");
  REQUIRE(line["containers"].size() == 1);
  CHECK(line["containers"][0]["label"] == "alice");
  // The died event came while the listing was pending: applied after the snapshot.
  CHECK(line["containers"][0]["state"] == "exited");
}

TEST_CASE("a health event publishes the inspected health, not the event's (Podman's is the one before)") {
  Fixture fixture;
  auto alice = managed_running("alice");
  alice.health = core::Health::healthy;
  fixture.runtime.containers["vscode-alice"] = alice;
  fixture.runtime.events = {core::ContainerEvent{core::EventKind::health, "id-alice", "alice", core::Health::starting, {}, {}}};
  auto& watcher = fixture.start();
  REQUIRE(run_until(fixture.io, [&] { return watcher.stream_connected() && fixture.runtime.inspects >= 1; }));
  test::run_for(fixture.io, std::chrono::milliseconds(20));
  REQUIRE(fixture.service.view("alice").container);
  CHECK(fixture.service.view("alice").container->health == core::Health::healthy);
  // The feed's snapshot for a new subscriber carries what it published.
  const auto line = first_feed_line(fixture);
  REQUIRE(line["containers"].size() == 1);
  CHECK(line["containers"][0]["health"] == "healthy");
}

TEST_CASE("a listing that ends after its stream does not reopen the feed") {
  Fixture fixture;
  fixture.runtime.call_delay = std::chrono::milliseconds(100);  // the listing too
  fixture.runtime.stream_lifetime = std::chrono::milliseconds(30);
  fixture.settings.initial_backoff = fixture.settings.max_backoff = std::chrono::milliseconds(300);
  fixture.runtime.containers["vscode-alice"] = managed_running("alice");
  auto& watcher = fixture.start();
  REQUIRE(run_until(fixture.io, [&] { return fixture.runtime.watches >= 1; }));
  // The stream ended at 30 ms, its listing answers at 100 ms, the next subscription comes at 330 ms.
  test::run_for(fixture.io, std::chrono::milliseconds(200));
  CHECK(fixture.runtime.lists == 1);
  CHECK(fixture.runtime.watches == 1);
  CHECK_FALSE(watcher.stream_connected());
  CHECK(fixture.feed.subscribe().error() == server::EventFeed::Refusal::not_following);
}

TEST_CASE("a health inspect that answers after its container was destroyed publishes nothing") {
  Fixture fixture;
  auto alice = managed_running("alice");
  alice.health = core::Health::healthy;
  fixture.runtime.containers["vscode-alice"] = alice;
  fixture.runtime.events = {core::ContainerEvent{core::EventKind::health, "id-alice", "alice", core::Health::healthy, {}, {}},
                            core::ContainerEvent{core::EventKind::destroyed, "id-alice", "alice", core::Health::none, {}, {}}};
  fixture.runtime.inspects_read = {{core::Health::healthy, std::chrono::milliseconds(100)}};  // read before the destroy
  auto& watcher = fixture.start();
  REQUIRE(run_until(fixture.io, [&] { return watcher.stream_connected() && fixture.runtime.inspects_read.empty(); }));
  test::run_for(fixture.io, std::chrono::milliseconds(200));
  CHECK_FALSE(fixture.service.view("alice").container);
  CHECK(first_feed_line(fixture)["containers"].empty());
}

TEST_CASE("health events whose inspects answer out of order publish the later health, not the earlier") {
  Fixture fixture;
  auto alice = managed_running("alice");
  alice.health = core::Health::healthy;
  fixture.runtime.containers["vscode-alice"] = alice;
  // Two checks in a row: the first inspect reads healthy but answers last; the second reads
  // unhealthy (the container's health now) and answers first.
  const core::ContainerEvent health{core::EventKind::health, "id-alice", "alice", core::Health::healthy, {}, {}};
  fixture.runtime.events = {health, health};
  fixture.runtime.inspects_read = {{core::Health::healthy, std::chrono::milliseconds(150)},
                                   {core::Health::unhealthy, std::chrono::milliseconds(10)}};
  auto& watcher = fixture.start();
  REQUIRE(run_until(fixture.io, [&] { return watcher.stream_connected() && fixture.runtime.inspects_read.empty(); }));
  test::run_for(fixture.io, std::chrono::milliseconds(300));  // both answered
  REQUIRE(fixture.service.view("alice").container);
  CHECK(fixture.service.view("alice").container->health == core::Health::unhealthy);
  CHECK(first_feed_line(fixture)["containers"][0]["health"] == "unhealthy");
}

TEST_CASE("the watcher subscribes again after the stream breaks, and lists again") {
  Fixture fixture;
  fixture.runtime.stream_lifetime = std::chrono::milliseconds(30);
  fixture.runtime.containers["vscode-alice"] = managed_running("alice");
  fixture.start();
  REQUIRE(run_until(fixture.io, [&] { return fixture.runtime.watches >= 3; }));
  CHECK(fixture.runtime.lists >= 2);
  CHECK(fixture.metrics.event_stream_reconnects() >= 2);
  // The second listing sees what changed while the stream was down.
  fixture.runtime.containers["vscode-bob"] = managed_running("bob");
  const auto lists = fixture.runtime.lists;
  REQUIRE(run_until(fixture.io, [&] { return fixture.runtime.lists > lists; }));
  REQUIRE(run_until(fixture.io, [&] { return fixture.service.view("bob").container.has_value(); }));
}

TEST_CASE("when the stream breaks, the feed's subscribers are ended until the watcher has listed again") {
  Fixture fixture;
  fixture.runtime.stream_lifetime = std::chrono::milliseconds(50);
  fixture.settings.initial_backoff = fixture.settings.max_backoff = std::chrono::milliseconds(200);
  fixture.runtime.containers["vscode-alice"] = managed_running("alice");
  auto& watcher = fixture.start();
  CHECK(fixture.feed.subscribe().error() == server::EventFeed::Refusal::not_following);  // not listed yet
  REQUIRE(run_until(fixture.io, [&] { return watcher.stream_connected(); }));
  auto subscription = fixture.feed.subscribe().value();
  bool ended = false;
  boost::asio::co_spawn(fixture.io, [&]() -> boost::asio::awaitable<void> {
    while (co_await subscription->next()) {}
    ended = true;
  }, director::net::log_if_thrown("test reader"));
  REQUIRE(run_until(fixture.io, [&] { return ended; }));
  // In the backoff before the next subscription: refused.
  CHECK_FALSE(watcher.stream_connected());
  CHECK(fixture.feed.subscribe().error() == server::EventFeed::Refusal::not_following);
  REQUIRE(run_until(fixture.io, [&] { return watcher.stream_connected(); }));
  CHECK(fixture.feed.subscribe().has_value());
}

TEST_CASE("while the runtime is down the watcher retries with backoff and is not ready") {
  Fixture fixture;
  fixture.runtime.available = false;
  auto& watcher = fixture.start();
  REQUIRE(run_until(fixture.io, [&] { return fixture.runtime.pings >= 3; }));
  CHECK_FALSE(watcher.runtime_reachable());
  CHECK_FALSE(watcher.stream_connected());
  CHECK(fixture.runtime.watches == 0);
  fixture.runtime.available = true;
  REQUIRE(run_until(fixture.io, [&] { return watcher.stream_connected(); }));
  CHECK(watcher.runtime_reachable());
}

TEST_CASE("stop ends the stream") {
  Fixture fixture;
  auto& watcher = fixture.start();
  REQUIRE(run_until(fixture.io, [&] { return watcher.stream_connected(); }));
  watcher.stop();
  REQUIRE(run_until(fixture.io, [&] { return !watcher.stream_connected(); }));
  test::run_for(fixture.io, std::chrono::milliseconds(50));
  CHECK(fixture.runtime.watches == 1);
}
