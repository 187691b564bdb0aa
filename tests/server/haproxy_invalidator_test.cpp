// HaproxyInvalidator against real HAProxy processes (../common/net/haproxy_fixture.hpp: 2.6 and
// 3.2 when present): keys revoked in their tables (gpt0 zeroed: no entry left that the fast path
// would use), entries a live request tracks, repeats, batching, keys that never reach HAProxy,
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
          std::chrono::milliseconds check_interval = 2s, std::chrono::milliseconds repeat_after = 300ms)
      : io(context) {
    HaproxyInvalidatorSettings settings;
    settings.sockets = std::move(sockets);
    settings.check_interval = check_interval;
    settings.command_timeout = 500ms;
    settings.repeat_after = repeat_after;
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
                      bool fast_path_table = true, std::chrono::milliseconds repeat_after = 300ms)
      : haproxy({.executable = version.executable,
                 .fast_path_table = fast_path_table,
                 .tracking_frontend = fast_path_table}),
        running(io, {haproxy.socket()}, seen, check_interval, repeat_after) {}

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

TEST_CASE("the invalidator revokes the whole table on start, then the keys it is given", "[haproxy_invalidator]") {
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
    CHECK(haproxy.live_keys().empty());
    CHECK(running.invalidator->all_reachable());

    haproxy.store_many({"alice", "bob", "carol"});
    running.invalidator->clear({"alice", "bob"});
    REQUIRE(run_until(io, [&] { return seen.keys_cleared == 4; }));  // 2 keys on each of 2 sockets
    CHECK(haproxy.live_keys() == std::vector<std::string>{"carol"});
    CHECK(haproxy.gpt0("alice") == 0);
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
    CHECK(haproxy.live_keys().empty());
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
    CHECK(haproxy.live_keys() == std::vector<std::string>{"someone-else"});
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
    CHECK(sorted(haproxy.live_keys()) == std::vector<std::string>{"a", "alice", "b"});
  }
}

TEST_CASE("an unreachable HAProxy turns reachability off; back, its table is revoked first", "[haproxy_invalidator]") {
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

    // Back, holding an answer granted while the agent could not reach it: revoked before
    // reachability returns.
    const auto clears_before = seen.table_clears;
    haproxy.start();
    haproxy.store("granted-meanwhile");
    REQUIRE(run_until(io, [&] { return seen.reachable(); }, 3s));
    CHECK(seen.reachability == std::vector<bool>{true, false, true});
    CHECK(seen.table_clears == clears_before + 1);
    CHECK(haproxy.live_keys().empty());
    CHECK(running.invalidator->status()[0].reachable);
  }
}

TEST_CASE("an entry a live request tracks is revoked, by key and whole table, and the socket stays reachable",
          "[haproxy_invalidator]") {
  for (const auto& version : versions_or_skip()) {
    INFO("HAProxy " << version.name);
    OneHaproxy one(version);
    auto& [haproxy, io, seen, running] = one;
    // After the start's whole-table revoke and its repeat, which would zero the entry too.
    REQUIRE(run_until(io, [&] { return seen.reachable() && running.invalidator->status()[0].repeats == 1; }));
    const auto request = haproxy.track("alice");
    haproxy.store("alice");
    // What HAProxy does with a delete: refused, and the whole-table clear keeps the entry.
    CHECK(haproxy.command("clear table fast_path key alice\n").starts_with("Entry currently in use"));
    CHECK(haproxy.command("clear table fast_path\n") == "\n");
    REQUIRE(haproxy.gpt0("alice") == 1);

    running.invalidator->clear({"alice"});
    REQUIRE(run_until(io, [&] { return seen.keys_cleared == 1; }));
    CHECK(haproxy.gpt0("alice") == 0);
    CHECK(haproxy.use("alice") == 1);  // still in use: revoked, not deleted

    haproxy.store_many({"alice", "bob"});
    running.invalidator->clear_all();
    REQUIRE(run_until(io, [&] { return seen.table_clears == 2; }));
    CHECK(haproxy.gpt0("alice") == 0);
    CHECK(haproxy.live_keys().empty());
    CHECK(running.invalidator->status()[0].in_use_revoked >= 1);

    CHECK(seen.reachability == std::vector<bool>{true});
    CHECK(running.invalidator->status()[0].reachable);
    CHECK(seen.refused == 0);
    CHECK(seen.failed == 0);
  }
}

TEST_CASE("an answer stored after a revoke (a late ACK) is zeroed by the revoke's repeat", "[haproxy_invalidator]") {
  for (const auto& version : versions_or_skip()) {
    INFO("HAProxy " << version.name);
    OneHaproxy one(version, 5s, true, /*repeat_after=*/700ms);
    auto& [haproxy, io, seen, running] = one;
    const auto repeats = [&] { return running.invalidator->status()[0].repeats; };
    REQUIRE(run_until(io, [&] { return seen.reachable(); }));
    REQUIRE(run_until(io, [&] { return repeats() == 1; }));  // the start's whole-table revoke, repeated

    // A key, and a key revoked again while its repeat waits: one repeat line for both.
    running.invalidator->clear({"alice"});
    REQUIRE(run_until(io, [&] { return seen.keys_cleared == 1; }));
    running.invalidator->clear({"alice", "bob"});
    REQUIRE(run_until(io, [&] { return seen.keys_cleared == 3; }));
    haproxy.store_many({"alice", "bob"});  // the late ACKs
    CHECK(haproxy.gpt0("alice") == 1);
    REQUIRE(run_until(io, [&] { return repeats() == 2; }));
    CHECK(haproxy.live_keys().empty());
    run_for(io, 300ms);
    CHECK(repeats() == 2);

    running.invalidator->clear_all();
    REQUIRE(run_until(io, [&] { return seen.table_clears == 2; }));
    haproxy.store("carol");
    CHECK(haproxy.gpt0("carol") == 1);
    REQUIRE(run_until(io, [&] { return repeats() == 3; }));
    CHECK(haproxy.live_keys().empty());
    CHECK(seen.refused == 0);
  }
}

TEST_CASE("more keys waiting for a repeat than max_pending_keys are repeated as the whole table",
          "[haproxy_invalidator]") {
  for (const auto& version : versions_or_skip()) {
    INFO("HAProxy " << version.name);
    Haproxy haproxy({.executable = version.executable});
    boost::asio::io_context io;
    Seen seen;
    HaproxyInvalidatorSettings settings;
    settings.sockets = {haproxy.socket()};
    settings.repeat_after = 700ms;
    settings.max_pending_keys = 3;
    HaproxyInvalidator invalidator(io.get_executor(), settings, seen.hooks());
    invalidator.start();
    const auto repeats = [&] { return invalidator.status()[0].repeats; };
    REQUIRE(run_until(io, [&] { return seen.reachable() && repeats() == 1; }));
    invalidator.clear({"a", "b"});
    REQUIRE(run_until(io, [&] { return seen.keys_cleared == 2; }));
    invalidator.clear({"c", "d"});  // 4 keys wait for a repeat
    REQUIRE(run_until(io, [&] { return seen.keys_cleared == 4; }));
    haproxy.store_many({"a", "someone-else"});
    REQUIRE(run_until(io, [&] { return repeats() == 2; }));
    CHECK(haproxy.live_keys().empty());  // the whole table, someone-else too
    run_for(io, 800ms);
    CHECK(repeats() == 2);
    invalidator.stop();
    run_until(io, [&] { return !invalidator.running(); });
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
