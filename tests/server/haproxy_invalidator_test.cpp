// HaproxyInvalidator against real HAProxy processes (../common/net/haproxy_fixture.hpp: 2.6 and
// 3.2 when present): keys cleared in their tables, batching, keys that never reach HAProxy,
// reachability as HAProxy goes and comes back, and a configuration without the table.
#include "server/haproxy_invalidator.hpp"

#include "../common/net/haproxy_fixture.hpp"
#include "../spawner/server/run_until.hpp"

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using director::server::HaproxyCommandResult;
using director::server::HaproxyInvalidator;
using director::server::HaproxyInvalidatorHooks;
using director::server::HaproxyInvalidatorSettings;
using director::spawner::test::run_for;
using director::spawner::test::run_until;
using director::test::Haproxy;

namespace {

std::vector<director::test::HaproxyVersion> versions_or_skip() {
  auto versions = director::test::haproxy_versions();
  if (versions.empty()) WARN("skipped: HAProxy is not installed (tools/install-deps.sh installs it)");
  return versions;
}

// What the hooks saw.
struct Seen {
  std::vector<bool> reachability;  // each on_reachability call
  std::size_t keys_cleared = 0;
  std::size_t key_commands = 0;  // keys_cleared calls: one per command line confirmed
  std::size_t table_clears = 0;
  std::size_t rejected = 0;
  std::size_t refused = 0;
  std::size_t failed = 0;

  HaproxyInvalidatorHooks hooks() {
    HaproxyInvalidatorHooks hooks;
    hooks.command = [this](HaproxyCommandResult result) {
      if (result == HaproxyCommandResult::refused) ++refused;
      if (result == HaproxyCommandResult::failed) ++failed;
    };
    hooks.keys_cleared = [this](std::size_t keys) {
      keys_cleared += keys;
      ++key_commands;
    };
    hooks.table_cleared = [this] { ++table_clears; };
    hooks.keys_rejected = [this](std::size_t keys) { rejected += keys; };
    hooks.on_reachability = [this](bool all) { reachability.push_back(all); };
    return hooks;
  }
  bool reachable() const { return !reachability.empty() && reachability.back(); }
};

// An invalidator on `io` for `sockets`, started; stopped and drained when the test ends.
struct Running {
  Running(boost::asio::io_context& context, std::vector<std::string> sockets, Seen& seen,
          std::chrono::milliseconds check_interval = 2s)
      : io(context) {
    HaproxyInvalidatorSettings settings;
    settings.sockets = std::move(sockets);
    settings.check_interval = check_interval;
    settings.command_timeout = 500ms;
    invalidator = std::make_unique<HaproxyInvalidator>(io.get_executor(), settings, seen.hooks());
    invalidator->start();
  }
  ~Running() {
    invalidator->stop();
    run_until(io, [&] { return !invalidator->running(); });
  }
  boost::asio::io_context& io;
  std::unique_ptr<HaproxyInvalidator> invalidator;
};

// One HAProxy, and an invalidator of its unix socket.
struct OneHaproxy {
  explicit OneHaproxy(const director::test::HaproxyVersion& version, std::chrono::milliseconds check_interval = 2s,
                      bool fast_path_table = true)
      : haproxy({.executable = version.executable, .fast_path_table = fast_path_table}),
        running(io, {haproxy.socket()}, seen, check_interval) {}

  Haproxy haproxy;
  boost::asio::io_context io;
  Seen seen;
  Running running;
};

std::vector<std::string> sorted(std::vector<std::string> keys) {
  std::sort(keys.begin(), keys.end());
  return keys;
}

}  // namespace

TEST_CASE("is_fast_path_key: the characters HAProxy's fast path stores, 1 to 64", "[haproxy_invalidator]") {
  using director::server::is_fast_path_key;
  CHECK(is_fast_path_key("alice"));
  CHECK(is_fast_path_key("jack.smith+dev@example.org"));
  CHECK(is_fast_path_key("A-Z_0.9"));
  CHECK(is_fast_path_key(std::string(64, 'k')));
  CHECK_FALSE(is_fast_path_key(""));
  CHECK_FALSE(is_fast_path_key(std::string(65, 'k')));
  CHECK_FALSE(is_fast_path_key("alice;clear table x"));
  CHECK_FALSE(is_fast_path_key("a\nb"));
  CHECK_FALSE(is_fast_path_key("a b"));
  CHECK_FALSE(is_fast_path_key("ünïcode"));
}

TEST_CASE("the invalidator clears the whole table on start, then the keys it is given", "[haproxy_invalidator]") {
  for (const auto& version : versions_or_skip()) {
    INFO("HAProxy " << version.name);
    Haproxy haproxy({.executable = version.executable, .tcp_socket = true});
    haproxy.store("granted-before-start");
    boost::asio::io_context io;
    Seen seen;
    Running running(io, {haproxy.socket(), haproxy.tcp_socket()}, seen);
    REQUIRE(run_until(io, [&] { return seen.reachable(); }));
    CHECK(seen.reachability == std::vector<bool>{true});
    CHECK(seen.table_clears == 2);  // once per socket
    CHECK(haproxy.keys().empty());
    CHECK(running.invalidator->all_reachable());

    haproxy.store_many({"alice", "bob", "carol"});
    running.invalidator->clear({"alice", "bob"});
    REQUIRE(run_until(io, [&] { return seen.keys_cleared == 4; }));  // 2 keys on each of 2 sockets
    CHECK(haproxy.keys() == std::vector<std::string>{"carol"});
    CHECK(seen.key_commands == 2);

    const auto status = running.invalidator->status();
    REQUIRE(status.size() == 2);
    CHECK(status[0].socket == haproxy.socket());
    CHECK(status[0].reachable);
    CHECK(status[0].last_error.empty());
    CHECK(status[0].keys_cleared == 2);
    CHECK(status[0].table_clears == 1);
    CHECK(status[0].last_clear.has_value());

    haproxy.store("dave");
    running.invalidator->clear_all();
    REQUIRE(run_until(io, [&] { return seen.table_clears == 4; }));
    CHECK(haproxy.keys().empty());
    CHECK(seen.refused == 0);
    CHECK(seen.failed == 0);
  }
}

TEST_CASE("the invalidator sends 1,000 keys as ten command lines of 100", "[haproxy_invalidator]") {
  for (const auto& version : versions_or_skip()) {
    INFO("HAProxy " << version.name);
    OneHaproxy one(version);
    auto& [haproxy, io, seen, running] = one;
    REQUIRE(run_until(io, [&] { return seen.reachable(); }));
    std::vector<std::string> keys;
    // The longest keys HAProxy stores: 100 of them make the longest line (9,100 bytes).
    for (int i = 0; i < 1000; ++i) keys.push_back(std::string(60, 'u') + std::to_string(1000 + i));
    haproxy.store_many(keys);
    haproxy.store("someone-else");
    REQUIRE(haproxy.keys().size() == 1001);
    running.invalidator->clear(keys);
    REQUIRE(run_until(io, [&] { return seen.keys_cleared == 1000; }));
    CHECK(seen.key_commands == 10);
    CHECK(haproxy.keys() == std::vector<std::string>{"someone-else"});
    CHECK(seen.refused == 0);
  }
}

TEST_CASE("keys outside the fast-path charset never reach HAProxy", "[haproxy_invalidator]") {
  for (const auto& version : versions_or_skip()) {
    INFO("HAProxy " << version.name);
    OneHaproxy one(version);
    auto& [haproxy, io, seen, running] = one;
    REQUIRE(run_until(io, [&] { return seen.reachable(); }));
    haproxy.store_many({"alice", "a", "b", "bob"});
    // Sent as they are, the first would clear the whole table and the second would be two lines.
    running.invalidator->clear({"alice;clear table fast_path", "a\nclear table fast_path key b", "", std::string(65, 'k'),
                                "bob"});
    REQUIRE(run_until(io, [&] { return seen.keys_cleared == 1; }));
    CHECK(seen.rejected == 4);
    CHECK(sorted(haproxy.keys()) == std::vector<std::string>{"a", "alice", "b"});
  }
}

TEST_CASE("an unreachable HAProxy turns reachability off; back, its table is cleared first", "[haproxy_invalidator]") {
  for (const auto& version : versions_or_skip()) {
    INFO("HAProxy " << version.name);
    Haproxy haproxy({.executable = version.executable});
    Haproxy other({.executable = version.executable});
    boost::asio::io_context io;
    Seen seen;
    Running running(io, {haproxy.socket(), other.socket()}, seen, 1s);
    REQUIRE(run_until(io, [&] { return seen.reachable(); }));

    haproxy.stop();
    running.invalidator->clear({"alice"});  // the command fails at once
    REQUIRE(run_until(io, [&] { return !seen.reachable(); }));
    CHECK(seen.reachability == std::vector<bool>{true, false});
    CHECK_FALSE(running.invalidator->all_reachable());
    auto status = running.invalidator->status();
    CHECK_FALSE(status[0].reachable);
    CHECK(status[0].last_error.starts_with("cannot connect"));
    CHECK(status[1].reachable);  // the other one still is
    CHECK(seen.failed >= 1);

    // Back, holding an answer granted while the agent could not reach it: cleared before
    // reachability returns.
    const auto clears_before = seen.table_clears;
    haproxy.start();
    haproxy.store("granted-meanwhile");
    REQUIRE(run_until(io, [&] { return seen.reachable(); }, 3s));
    CHECK(seen.reachability == std::vector<bool>{true, false, true});
    CHECK(seen.table_clears == clears_before + 1);
    CHECK(haproxy.keys().empty());
    CHECK(running.invalidator->status()[0].reachable);
  }
}

TEST_CASE("the periodic check notices an HAProxy that went away without any command", "[haproxy_invalidator]") {
  for (const auto& version : versions_or_skip()) {
    INFO("HAProxy " << version.name);
    OneHaproxy one(version, 200ms);
    auto& [haproxy, io, seen, running] = one;
    REQUIRE(run_until(io, [&] { return seen.reachable(); }));
    run_for(io, 500ms);  // checks pass meanwhile
    CHECK(seen.reachability == std::vector<bool>{true});
    haproxy.stop();
    REQUIRE(run_until(io, [&] { return !seen.reachable(); }, 1s));
  }
}

TEST_CASE("an HAProxy without the table is reported, and never reachable", "[haproxy_invalidator]") {
  for (const auto& version : versions_or_skip()) {
    INFO("HAProxy " << version.name);
    OneHaproxy one(version, 200ms, /*fast_path_table=*/false);
    auto& [haproxy, io, seen, running] = one;
    REQUIRE(run_until(io, [&] { return seen.refused >= 2; }));
    CHECK(seen.reachability.empty());
    CHECK(seen.table_clears == 0);
    const auto status = running.invalidator->status();
    CHECK_FALSE(status[0].reachable);
    CHECK(status[0].last_error.starts_with("HAProxy has no table fast_path"));
  }
}

TEST_CASE("an invalidator without sockets does nothing and is never reachable", "[haproxy_invalidator]") {
  boost::asio::io_context io;
  Seen seen;
  Running running(io, {}, seen);
  running.invalidator->clear({"alice"});
  running.invalidator->clear_all();
  run_for(io, 50ms);
  CHECK(seen.reachability.empty());
  CHECK_FALSE(running.invalidator->all_reachable());
  CHECK(running.invalidator->status().empty());
}
