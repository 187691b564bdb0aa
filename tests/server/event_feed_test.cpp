// EventFeed against a real HTTP server on 127.0.0.1 (net::http::HttpServer with a stream route,
// as the spawner serves /events): snapshots, events in order, reconnects, the heartbeat
// timeout, refusals, stop(). One thread runs everything, so the callbacks need no lock here.
// GCC flags the coroutine frames of the lambdas below as a mismatched delete: they are not
// (tests/bench/codec_bench.cpp has the same).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

#include "server/event_feed.hpp"

#include "asio_test_support.hpp"
#include "net/awaitable.hpp"
#include "net/http_server.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
namespace asio = boost::asio;
using asio::ip::tcp;
using director::feed::ContainerState;
using director::feed::FeedUrl;
using director::net::nothrow_awaitable;
using director::server::EventFeed;
using director::server::EventFeedCallbacks;
using director::server::EventFeedSettings;
using director::decision::FeedId;
using director::test::run_until_complete;
namespace http = director::net::http;

namespace {

// One connection to the feed server: the lines the test queues go out in order; `close` ends it.
struct Subscriber {
  explicit Subscriber(const asio::any_io_executor& executor) : wake(executor, asio::steady_timer::time_point::max()) {}
  std::deque<std::string> queue;
  bool close = false;
  bool gone = false;  // the body returned
  asio::steady_timer wake;

  void send(std::string line) {
    queue.push_back(std::move(line));
    wake.cancel();
  }
  void end() {
    close = true;
    wake.cancel();
  }
};

// The spawner's /events as far as the agent can tell: each new subscriber first gets
// `first_lines`, then what the test sends it.
struct FeedServer {
  explicit FeedServer(asio::io_context& io)
      : http(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0), "feed", router()) {
    http.start();
  }

  http::Router router() {
    http::Router routes;
    routes.stream("/events", [this](const http::Request& request) {
      accepts.push_back(std::string(request[boost::beast::http::field::accept]));
      auto subscriber = std::make_shared<Subscriber>(executor);
      for (const auto& line : first_lines) subscriber->queue.push_back(line);
      subscribers.push_back(subscriber);
      return http::StreamResponse{
          http::make_response(http::Status::ok, "application/x-ndjson", ""),
          [subscriber](http::StreamWriter& writer) -> asio::awaitable<void> {
            for (;;) {
              while (!subscriber->queue.empty()) {
                auto line = std::move(subscriber->queue.front());
                subscriber->queue.pop_front();
                if (!co_await writer.write(std::move(line))) break;
              }
              if (subscriber->close || !writer.open()) break;
              subscriber->wake.expires_at(asio::steady_timer::time_point::max());
              co_await subscriber->wake.async_wait(nothrow_awaitable);
            }
            subscriber->gone = true;
          }};
    });
    return routes;
  }

  FeedUrl url(std::string path = "/events") const {
    return FeedUrl{"127.0.0.1", http.local_endpoint().port(), std::move(path)};
  }

  asio::any_io_executor executor;  // set before the server runs (the io_context's)
  std::vector<std::string> first_lines;
  std::vector<std::shared_ptr<Subscriber>> subscribers;
  std::vector<std::string> accepts;
  http::HttpServer http;
};

std::string describe(const ContainerState& state) {
  // The agent keeps a container id as a fixed-size value: named back by the ids these tests send.
  std::string id = state.id.empty() ? "" : "?";
  for (const char* name : {"a1", "b1", "c1", "d1"}) {
    if (state.id == director::feed::ContainerId(name)) id = name;
  }
  return id + (state.running ? ":running" : ":not-running") + (state.unhealthy ? ":unhealthy" : "");
}

// What the callbacks saw, one line each: "snapshot 0 alice=a1:running", "event 0 bob=gone",
// "event 0 bob=b1:not-running username=Bob@Example.com", "lost 0".
struct Recorder {
  std::vector<std::string> seen;
  EventFeedCallbacks callbacks() {
    return EventFeedCallbacks{
        [this](FeedId feed, director::feed::Containers containers) {
          std::string line = "snapshot " + std::to_string(feed);
          for (const auto& [label, state] : containers) line += " " + label + "=" + describe(state);
          seen.push_back(line);
        },
        [this](FeedId feed, std::string_view label, std::string_view username, std::optional<ContainerState> state) {
          seen.push_back("event " + std::to_string(feed) + " " + std::string(label) + "=" +
                         (state ? describe(*state) : std::string("gone")) +
                         (username.empty() ? "" : " username=" + std::string(username)));
        },
        [this](FeedId feed) { seen.push_back("lost " + std::to_string(feed)); }};
  }
};

asio::awaitable<void> sleep_for(std::chrono::milliseconds duration) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  co_await timer.async_wait(nothrow_awaitable);
}

// Polls `condition` every 5 ms; false when it does not hold within `limit`.
asio::awaitable<bool> eventually(const std::function<bool()>& condition, std::chrono::milliseconds limit = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) co_return false;
    co_await sleep_for(5ms);
  }
  co_return true;
}

// Stops the feed and the server and waits for the feed's coroutines (they refer to it).
asio::awaitable<void> shut_down(EventFeed& feed, FeedServer* server) {
  feed.stop();
  CHECK(co_await eventually([&] { return feed.done(); }, 2s));
  if (server) server->http.stop();
}

const std::string snapshot_line =
    "{\"type\":\"snapshot\",\"containers\":[{\"label\":\"alice\",\"id\":\"a1\",\"state\":\"running\","
    "\"health\":\"healthy\"},{\"label\":\"carol\",\"id\":\"c1\",\"state\":\"exited\",\"health\":\"none\"}]}\n";

EventFeedSettings fast_settings() {
  EventFeedSettings settings;
  settings.initial_backoff = 20ms;
  settings.max_backoff = 80ms;
  settings.heartbeat_timeout = 5s;
  settings.connect_timeout = 2s;
  return settings;
}

// A TCP port on 127.0.0.1 that nothing listens on (bound, then closed).
std::uint16_t closed_port(asio::io_context& io) {
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  return acceptor.local_endpoint().port();
}

// A feed server whose subscribers get snapshot_line first, and a recorder of the callbacks.
struct Fixture {
  Fixture() {
    server.executor = io.get_executor();
    server.first_lines = {snapshot_line};
  }
  asio::io_context io;
  FeedServer server{io};
  Recorder recorder;
};

// Starts a feed of `fixture`'s server, runs `test` once the feed has recorded its first
// snapshot, then shuts the feed and the server down.
void run_after_first_snapshot(Fixture& fixture, const std::function<asio::awaitable<void>(EventFeed&)>& test,
                              const EventFeedSettings& settings = fast_settings()) {
  EventFeed feed(fixture.io.get_executor(), {fixture.server.url()}, fixture.recorder.callbacks(), settings);
  feed.start();
  run_until_complete(fixture.io, [&]() -> asio::awaitable<void> {
    REQUIRE(co_await eventually([&] { return fixture.recorder.seen.size() == 1; }));
    co_await test(feed);
    co_await shut_down(feed, &fixture.server);
  }());
}

}  // namespace

TEST_CASE("event feed: the snapshot then events in order", "[event_feed]") {
  Fixture fixture;
  auto& [io, server, recorder] = fixture;
  EventFeed feed(io.get_executor(), {server.url()}, recorder.callbacks(), fast_settings());
  CHECK(feed.status().at(0).url == "http://127.0.0.1:" + std::to_string(server.url().port) + "/events");
  CHECK_FALSE(feed.status().at(0).connected);
  feed.start();
  run_until_complete(io, [&]() -> asio::awaitable<void> {
    REQUIRE(co_await eventually([&] { return recorder.seen.size() == 1; }));
    CHECK(recorder.seen[0] == "snapshot 0 alice=a1:running carol=c1:not-running");
    CHECK(server.accepts == std::vector<std::string>{"application/x-ndjson"});
    auto status = feed.status().at(0);
    CHECK(status.connected);
    CHECK(status.labels == 2);
    CHECK(status.reconnects == 0);
    CHECK(status.last_error.empty());

    auto& subscriber = *server.subscribers.at(0);
    // Split across writes and lines, with an unknown type and a heartbeat among them.
    subscriber.send("{\"type\":\"started\",\"label\":\"bob\",\"id\":\"b1\"}\n{\"type\":\"hea");
    subscriber.send("lth\",\"label\":\"bob\",\"id\":\"b1\",\"health\":\"unhealthy\"}\n{\"type\":\"heartbeat\"}\n");
    subscriber.send("{\"type\":\"paused\",\"label\":\"alice\"}\n{\"type\":\"died\",\"label\":\"alice\",\"id\":\"a1\",");
    subscriber.send("\"username\":\"Alice@Example.com\",\"exit_code\":137}\n{\"type\":\"destroyed\",\"label\":\"carol\",\"id\":\"c1\"}\n");
    REQUIRE(co_await eventually([&] { return recorder.seen.size() == 5; }));
    CHECK(recorder.seen == std::vector<std::string>{"snapshot 0 alice=a1:running carol=c1:not-running",
                                                    "event 0 bob=b1:running", "event 0 bob=b1:running:unhealthy",
                                                    "event 0 alice=a1:not-running username=Alice@Example.com",
                                                    "event 0 carol=gone"});
    CHECK(feed.status().at(0).labels == 2);  // alice, bob
    co_await shut_down(feed, &server);
  }());
  CHECK(recorder.seen.size() == 5);  // stop() calls nothing
}

TEST_CASE("event feed: a server that closes the feed: lost then a reconnect with a new snapshot", "[event_feed]") {
  Fixture fixture;
  auto& [io, server, recorder] = fixture;
  run_after_first_snapshot(fixture, [&](EventFeed& feed) -> asio::awaitable<void> {
    const auto connected_since = feed.status().at(0).since;
    server.first_lines = {"{\"type\":\"snapshot\",\"containers\":[{\"label\":\"bob\",\"id\":\"b1\",\"state\":\"running\"}]}\n"};
    server.subscribers.at(0)->end();
    REQUIRE(co_await eventually([&] { return recorder.seen.size() == 3; }));
    CHECK(recorder.seen[1] == "lost 0");
    CHECK(recorder.seen[2] == "snapshot 0 bob=b1:running");
    const auto status = feed.status().at(0);
    CHECK(status.connected);
    CHECK(status.reconnects == 1);
    CHECK(status.labels == 1);
    CHECK(status.since > connected_since);
    CHECK(status.last_error.find("closed the feed") != std::string::npos);
    CHECK(server.subscribers.size() == 2);
  });
}

TEST_CASE("event feed: a silent server is lost after the heartbeat timeout but heartbeats keep it", "[event_feed]") {
  Fixture fixture;
  auto& [io, server, recorder] = fixture;
  auto settings = fast_settings();
  settings.heartbeat_timeout = 300ms;
  run_after_first_snapshot(fixture, [&](EventFeed& feed) -> asio::awaitable<void> {
    // Heartbeats every 100 ms for 900 ms: three timeouts' worth, never lost.
    for (int beat = 0; beat < 9; ++beat) {
      co_await sleep_for(100ms);
      server.subscribers.at(0)->send("{\"type\":\"heartbeat\"}\n");
    }
    CHECK(recorder.seen.size() == 1);
    CHECK(feed.status().at(0).connected);
    // Then silence.
    const auto silent_from = std::chrono::steady_clock::now();
    REQUIRE(co_await eventually([&] { return recorder.seen.size() >= 2; }, 5s));
    const auto waited = std::chrono::steady_clock::now() - silent_from;
    CHECK(recorder.seen[1] == "lost 0");
    CHECK(waited >= 290ms);
    CHECK(waited < 2500ms);  // generous: the machine may be busy
    CHECK(feed.status().at(0).last_error.find("no line from") != std::string::npos);
    // It reconnects and gets the snapshot again.
    REQUIRE(co_await eventually([&] { return recorder.seen.size() >= 3; }, 3s));
    CHECK(recorder.seen[2] == "snapshot 0 alice=a1:running carol=c1:not-running");
  }, settings);
}

TEST_CASE("event feed: a bad line ends the connection and the feed is lost and says why", "[event_feed]") {
  Fixture fixture;
  auto& [io, server, recorder] = fixture;
  run_after_first_snapshot(fixture, [&](EventFeed& feed) -> asio::awaitable<void> {
    server.first_lines = {};  // the next connection stays before its snapshot
    server.subscribers.at(0)->send("{\"type\":\"started\",\"label\":\"bob\"}\n{\"type\":\"started\",\"label\":[]}\n");
    // The good line before the bad one in the same piece is dropped with it: the feed is lost.
    REQUIRE(co_await eventually([&] { return recorder.seen.size() == 2; }));
    CHECK(recorder.seen[1] == "lost 0");
    REQUIRE(co_await eventually([&] { return server.subscribers.size() == 2; }));
    const auto status = feed.status().at(0);
    CHECK_FALSE(status.connected);
    CHECK(status.labels == 0);
    CHECK(status.last_error.find("line 3: a started event without a label") != std::string::npos);
    // Events before the connection's snapshot are ignored; the snapshot connects.
    server.subscribers[1]->send("{\"type\":\"started\",\"label\":\"dave\",\"id\":\"d1\"}\n");
    co_await sleep_for(50ms);
    CHECK(recorder.seen.size() == 2);
    CHECK_FALSE(feed.status().at(0).connected);
    server.subscribers[1]->send(snapshot_line);
    REQUIRE(co_await eventually([&] { return recorder.seen.size() == 3; }));
    CHECK(recorder.seen[2] == "snapshot 0 alice=a1:running carol=c1:not-running");
  });
}

TEST_CASE("event feed: a callback that throws is logged and the feed starts over", "[event_feed]") {
  Fixture fixture;
  auto& [io, server, recorder] = fixture;
  auto callbacks = recorder.callbacks();
  bool thrown = false;
  callbacks.on_snapshot = [&, record = callbacks.on_snapshot](FeedId id, director::feed::Containers containers) {
    if (!std::exchange(thrown, true)) throw std::runtime_error("receiver bug");
    record(id, std::move(containers));
  };
  EventFeed feed(io.get_executor(), {server.url()}, callbacks, fast_settings());
  feed.start();
  run_until_complete(io, [&]() -> asio::awaitable<void> {
    REQUIRE(co_await eventually([&] { return recorder.seen.size() == 2; }));
    CHECK(recorder.seen == std::vector<std::string>{"lost 0", "snapshot 0 alice=a1:running carol=c1:not-running"});
    CHECK(feed.status().at(0).last_error == "an event feed callback failed: receiver bug");
    CHECK(feed.status().at(0).connected);
    co_await shut_down(feed, &server);
  }());
}

TEST_CASE("event feed: refusals and unreachable servers are retried with backoff and call nothing", "[event_feed]") {
  asio::io_context io;
  FeedServer server(io);
  server.executor = io.get_executor();
  Recorder recorder;
  const FeedUrl refused{"127.0.0.1", closed_port(io), "/events"};
  EventFeed feed(io.get_executor(), {server.url("/nope"), refused}, recorder.callbacks(), fast_settings());
  feed.start();
  run_until_complete(io, [&]() -> asio::awaitable<void> {
    REQUIRE(co_await eventually([&] {
      const auto status = feed.status();
      return status[0].reconnects >= 3 && status[1].reconnects >= 3;
    }));
    const auto status = feed.status();
    // With the refusal's reason, its body (the spawner's {"error": why}: a 503 says "not following").
    CHECK(status[0].last_error == "HTTP 404 from " + status[0].url + ": {\"error\":\"not found (paths: /events)\"}");
    CHECK(status[1].last_error.find("cannot connect to 127.0.0.1:") != std::string::npos);
    CHECK_FALSE(status[0].connected);
    CHECK_FALSE(status[1].connected);
    // Backoff: 20 ms doubling to 80 ms (each wait 50-100% of it): in 400 ms, 5 to 10 tries (from 3
    // on a busy machine; never more than 400 / 10).
    const auto before = feed.status()[1].reconnects;
    co_await sleep_for(400ms);
    const auto tries = feed.status()[1].reconnects - before;
    CHECK(tries >= 3);
    CHECK(tries <= 12);
    co_await shut_down(feed, &server);
  }());
  CHECK(recorder.seen.empty());
}

TEST_CASE("event feed: stop() while connected or connecting or waiting ends every coroutine promptly", "[event_feed]") {
  asio::io_context io;
  FeedServer server(io);
  server.executor = io.get_executor();
  server.first_lines = {snapshot_line};
  // A listener that accepts and never answers: the feed waits for a response head.
  tcp::acceptor mute(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  std::vector<tcp::socket> held;
  std::function<void()> accept_one = [&] {
    mute.async_accept([&](boost::system::error_code error, tcp::socket socket) {
      if (error) return;
      held.push_back(std::move(socket));
      accept_one();
    });
  };
  accept_one();
  const FeedUrl connecting{"127.0.0.1", mute.local_endpoint().port(), "/events"};
  const FeedUrl refused{"127.0.0.1", closed_port(io), "/events"};
  Recorder recorder;
  auto settings = fast_settings();
  settings.connect_timeout = 30s;
  settings.initial_backoff = 30s;  // the refused feed waits out its first backoff
  EventFeed feed(io.get_executor(), {server.url(), connecting, refused}, recorder.callbacks(), settings);
  feed.start();
  run_until_complete(io, [&]() -> asio::awaitable<void> {
    REQUIRE(co_await eventually([&] {
      return recorder.seen.size() == 1 && !held.empty() && !feed.status()[2].last_error.empty();
    }));
    CHECK_FALSE(feed.done());
    const auto stopped_at = std::chrono::steady_clock::now();
    feed.stop();
    CHECK(co_await eventually([&] { return feed.done(); }, 2s));
    CHECK(std::chrono::steady_clock::now() - stopped_at < 1s);
    CHECK_FALSE(feed.status()[0].connected);
    // The connection is closed: the server notices at its next writes.
    CHECK(co_await eventually([&] {
      server.subscribers.at(0)->send("{\"type\":\"heartbeat\"}\n");
      return server.subscribers.at(0)->gone;
    }, 2s));
    server.http.stop();
    mute.close();
  }());
  CHECK(recorder.seen == std::vector<std::string>{"snapshot 0 alice=a1:running carol=c1:not-running"});
}

TEST_CASE("event feed: stop() from another thread while the io_context runs on two", "[event_feed]") {
  asio::io_context io;
  // A server per feed: a server's records are not shared between threads.
  FeedServer server(io);
  FeedServer other(io);
  for (auto* each : {&server, &other}) {
    each->executor = io.get_executor();
    each->first_lines = {snapshot_line};
  }
  std::atomic<int> snapshots{0};
  EventFeedCallbacks callbacks{[&](FeedId, director::feed::Containers) { ++snapshots; }, {}, {}};
  EventFeed feed(io.get_executor(), {server.url(), other.url()}, callbacks, fast_settings());
  feed.start();
  auto work = asio::make_work_guard(io);
  std::thread first([&] { io.run(); });
  std::thread second([&] { io.run(); });
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (snapshots < 2 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
  CHECK(snapshots == 2);
  for (const auto& status : feed.status()) CHECK(status.connected);
  feed.stop();
  while (!feed.done() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
  CHECK(feed.done());
  server.http.stop();
  other.http.stop();
  work.reset();
  io.stop();
  first.join();
  second.join();
}
