// The event feed's lines and its subscribers: snapshot first, events, heartbeats, bounds.
#include "server/event_feed.hpp"

#include "net/awaitable.hpp"
#include "fake_runtime.hpp"
#include "run_until.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

namespace {

using namespace director::spawner;
using director::spawner::test::managed_running;
using director::spawner::test::run_until;
using Json = nlohmann::json;

// Reads lines from a subscription into `lines` until it closes.
boost::asio::awaitable<void> read_all(std::shared_ptr<server::Subscription> subscription, std::vector<std::string>& lines,
                                      bool& closed) {
  while (auto line = co_await subscription->next()) lines.push_back(std::move(*line));
  closed = true;
}

}  // namespace

TEST_CASE("the lines are one JSON object each, as plan.md describes them") {
  const auto snapshot = Json::parse(server::snapshot_line({managed_running("alice")}));
  CHECK(snapshot["type"] == "snapshot");
  REQUIRE(snapshot["containers"].size() == 1);
  CHECK(snapshot["containers"][0] == Json{{"label", "alice"}, {"id", "id-alice"}, {"state", "running"}, {"health", "none"}});

  const auto died = server::event_line(core::ContainerEvent{core::EventKind::died, "id-alice", "alice", core::Health::none, 137, {}});
  CHECK(died.back() == '\n');
  CHECK(Json::parse(died) == Json{{"type", "died"}, {"label", "alice"}, {"id", "id-alice"}, {"exit_code", 137}});
  const auto health = Json::parse(server::event_line(core::ContainerEvent{core::EventKind::health, "id-alice", "alice", core::Health::unhealthy, std::nullopt, {}}));
  CHECK(health == Json{{"type", "health"}, {"label", "alice"}, {"id", "id-alice"}, {"health", "unhealthy"}});
  CHECK(Json::parse(server::heartbeat_line()) == Json{{"type", "heartbeat"}});
  // The username the container was created for, when it carries one: HAProxy may hold the
  // user's answer under it.
  const auto stopped = Json::parse(server::event_line(
      core::ContainerEvent{core::EventKind::stopped, "id-jack", "jack-doe-5e1f", core::Health::none, std::nullopt, "Jack.Doe@Example.com"}));
  CHECK(stopped == Json{{"type", "stopped"}, {"label", "jack-doe-5e1f"}, {"id", "id-jack"}, {"username", "Jack.Doe@Example.com"}});
}

TEST_CASE("a subscriber gets the snapshot of now first, then the events, then a new snapshot on re-list") {
  boost::asio::io_context io;
  server::EventFeed feed;
  feed.on_snapshot({managed_running("alice"), managed_running("bob")});
  feed.on_event(core::ContainerEvent{core::EventKind::died, "id-bob", "bob", core::Health::none, 1, {}});
  auto subscription = feed.subscribe().value();
  CHECK(feed.subscribers() == 1);
  std::vector<std::string> lines;
  bool closed = false;
  boost::asio::co_spawn(io, read_all(subscription, lines, closed), director::net::log_if_thrown("test reader"));
  feed.on_event(core::ContainerEvent{core::EventKind::started, "id-carol", "carol", core::Health::none, std::nullopt, {}});
  feed.on_snapshot({managed_running("alice")});
  REQUIRE(run_until(io, [&] { return lines.size() == 3; }));
  const auto first = Json::parse(lines[0]);
  CHECK(first["type"] == "snapshot");
  REQUIRE(first["containers"].size() == 2);
  CHECK(first["containers"][1]["label"] == "bob");
  CHECK(first["containers"][1]["state"] == "exited");
  CHECK(Json::parse(lines[1])["type"] == "started");
  CHECK(Json::parse(lines[2])["type"] == "snapshot");
  feed.close();
  REQUIRE(run_until(io, [&] { return closed; }));
  CHECK(feed.subscribe().error() == server::EventFeed::Refusal::closed);  // for good: the spawner is stopping
  feed.on_snapshot({});
  CHECK(feed.subscribe().error() == server::EventFeed::Refusal::closed);
}

TEST_CASE("the feed vouches only while the spawner follows the runtime: from a listing until its stream ends") {
  boost::asio::io_context io;
  server::EventFeed feed;
  // Before the first listing: nothing known yet, and no subscriber told otherwise.
  CHECK(feed.subscribe().error() == server::EventFeed::Refusal::not_following);
  feed.on_snapshot({managed_running("alice")});
  auto subscription = feed.subscribe().value();
  std::vector<std::string> lines;
  bool closed = false;
  boost::asio::co_spawn(io, read_all(subscription, lines, closed), director::net::log_if_thrown("test reader"));
  REQUIRE(run_until(io, [&] { return lines.size() == 1; }));
  // The runtime's event stream ended: events are missed from now on, so the subscriber's stream
  // ends (its agent falls back to TTLs), and new subscribers wait for the next listing.
  feed.on_runtime_lost();
  REQUIRE(run_until(io, [&] { return closed; }));
  CHECK(feed.subscribers() == 0);
  CHECK(feed.subscribe().error() == server::EventFeed::Refusal::not_following);
  feed.on_snapshot({managed_running("alice"), managed_running("bob")});
  auto again = feed.subscribe().value();
  std::optional<std::string> first;
  boost::asio::co_spawn(io, [&]() -> boost::asio::awaitable<void> { first = co_await again->next(); },
                        director::net::log_if_thrown("test reader"));
  REQUIRE(run_until(io, [&] { return first.has_value(); }));
  CHECK(Json::parse(*first)["containers"].size() == 2);
  // Stopping wins over everything: no listing opens a closed feed.
  feed.close();
  feed.on_runtime_lost();
  feed.on_snapshot({});
  CHECK(feed.subscribe().error() == server::EventFeed::Refusal::closed);
}

TEST_CASE("a quiet feed sends heartbeats") {
  boost::asio::io_context io;
  server::EventFeed feed(server::FeedLimits{4, 16, std::chrono::milliseconds(30)});
  feed.on_snapshot({});
  auto subscription = feed.subscribe().value();
  std::vector<std::string> lines;
  bool closed = false;
  boost::asio::co_spawn(io, read_all(subscription, lines, closed), director::net::log_if_thrown("test reader"));
  REQUIRE(run_until(io, [&] { return lines.size() >= 3; }));
  CHECK(lines[1] == server::heartbeat_line());
  CHECK(lines[2] == server::heartbeat_line());
}

TEST_CASE("the feed is bounded: subscribers at most, and a subscriber too far behind is closed") {
  boost::asio::io_context io;
  server::EventFeed feed(server::FeedLimits{2, 4, std::chrono::milliseconds(15'000)});
  feed.on_snapshot({});
  auto one = feed.subscribe().value();
  auto two = feed.subscribe().value();
  CHECK(feed.subscribe().error() == server::EventFeed::Refusal::full);
  two.reset();  // dropping it unsubscribes
  CHECK(feed.subscribers() == 1);
  for (int i = 0; i < 10; ++i) {
    feed.on_event(core::ContainerEvent{core::EventKind::started, "id", "alice", core::Health::none, std::nullopt, {}});
  }
  CHECK(feed.subscribers() == 0);  // `one` never read: closed
  std::vector<std::string> lines;
  bool closed = false;
  boost::asio::co_spawn(io, read_all(one, lines, closed), director::net::log_if_thrown("test reader"));
  REQUIRE(run_until(io, [&] { return closed; }));
  CHECK(lines.empty());
}
