// HaproxyInvalidator against real HAProxy processes (../common/net/haproxy_fixture.hpp: 2.6 and
// 3.2 when present): keys revoked in their tables (gpt0 zeroed: no entry left that the fast path
// would use), entries a live request tracks, repeats, batching, keys that never reach HAProxy,
// reachability as HAProxy goes and comes back, and a configuration without the table.
#include "server/haproxy_invalidator.hpp"

#include "../common/net/haproxy_fixture.hpp"
#include "../spawner/server/run_until.hpp"

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
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
      : Running(context, seen, settings_for(std::move(sockets), check_interval, repeat_after)) {}
  Running(boost::asio::io_context& context, Seen& seen, const HaproxyInvalidatorSettings& settings) : io(context) {
    invalidator = std::make_unique<HaproxyInvalidator>(io.get_executor(), settings, seen.hooks());
    invalidator->start();
  }
  static HaproxyInvalidatorSettings settings_for(std::vector<std::string> sockets,
                                                 std::chrono::milliseconds check_interval,
                                                 std::chrono::milliseconds repeat_after) {
    HaproxyInvalidatorSettings settings;
    settings.sockets = std::move(sockets);
    settings.check_interval = check_interval;
    settings.command_timeout = 500ms;
    settings.repeat_after = repeat_after;
    return settings;
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

// A unix socket listening at a fresh path under /tmp (removed on destruction), accepting nothing
// itself: connections wait in its backlog, as with an HAProxy too busy to answer.
class UnixListener {
 public:
  UnixListener() {
    char pattern[] = "/tmp/director-invalidator-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) throw std::runtime_error("mkdtemp failed");
    directory_ = pattern;
    fd_ = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    const auto socket_path = path();
    std::memcpy(address.sun_path, socket_path.c_str(), socket_path.size() + 1);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 || ::listen(fd_, 64) != 0) {
      throw std::runtime_error("cannot listen on " + socket_path);
    }
  }
  ~UnixListener() {
    ::close(fd_);
    std::error_code ignored;
    std::filesystem::remove_all(directory_, ignored);
  }
  UnixListener(const UnixListener&) = delete;
  UnixListener& operator=(const UnixListener&) = delete;

  std::string path() const { return (directory_ / "stats.sock").string(); }
  int fd() const { return fd_; }

 private:
  std::filesystem::path directory_;
  int fd_ = -1;
};

// A stats socket in front of a real HAProxy's: each command goes to HAProxy as it came, and its
// answer comes back `delay` late when `slow(command)` holds (a busy HAProxy, as far as the
// invalidator can tell). One connection at a time, on a thread of its own.
class DelayingSocket {
 public:
  DelayingSocket(const Haproxy& haproxy, std::function<bool(std::string_view command)> slow,
                 std::chrono::milliseconds delay)
      : haproxy_(haproxy), slow_(std::move(slow)), delay_(delay), thread_([this] { serve(); }) {}
  ~DelayingSocket() {
    ::shutdown(listener_.fd(), SHUT_RDWR);  // wakes accept()
    thread_.join();
  }
  DelayingSocket(const DelayingSocket&) = delete;
  DelayingSocket& operator=(const DelayingSocket&) = delete;

  std::string path() const { return listener_.path(); }

 private:
  void serve() {
    for (int fd; (fd = ::accept(listener_.fd(), nullptr, nullptr)) >= 0; ::close(fd)) {
      std::string command;
      char buffer[4096];
      for (ssize_t got; command.find('\n') == std::string::npos && command.size() < 1'000'000 &&
                        (got = ::recv(fd, buffer, sizeof buffer, 0)) > 0;) {
        command.append(buffer, static_cast<std::size_t>(got));
      }
      if (slow_(command)) std::this_thread::sleep_for(delay_);
      const auto answer = haproxy_.command(command);
      ::send(fd, answer.data(), answer.size(), MSG_NOSIGNAL);
    }
  }

  const Haproxy& haproxy_;
  std::function<bool(std::string_view)> slow_;
  std::chrono::milliseconds delay_;
  UnixListener listener_;
  std::thread thread_;  // last: starts once the rest is ready
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

TEST_CASE("an unreachable HAProxy turns reachability off, and once back its table is revoked first", "[haproxy_invalidator]") {
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

TEST_CASE("start's `then` comes once every socket's table was revoked, not before", "[haproxy_invalidator][start]") {
  for (const auto& version : versions_or_skip()) {
    INFO("HAProxy " << version.name);
    Haproxy haproxy({.executable = version.executable});
    Haproxy other({.executable = version.executable});
    haproxy.store("granted-by-the-last-run");
    other.store("granted-there-too");
    // The first socket's clear answers 300 ms late: `then` must wait for it.
    DelayingSocket slow(haproxy, [](std::string_view command) { return command.starts_with("clear table"); }, 300ms);
    boost::asio::io_context io;
    Seen seen;
    HaproxyInvalidatorSettings settings;
    settings.sockets = {slow.path(), other.socket()};
    settings.first_revoke_wait = 5s;
    HaproxyInvalidator invalidator(io.get_executor(), settings, seen.hooks());
    int calls = 0;
    std::optional<std::vector<std::string>> live_at_then;  // both tables' live keys when `then` ran
    const auto started = std::chrono::steady_clock::now();
    std::chrono::steady_clock::duration waited{};
    invalidator.start([&] {
      ++calls;
      waited = std::chrono::steady_clock::now() - started;
      auto live = haproxy.live_keys();
      for (auto& key : other.live_keys()) live.push_back(std::move(key));
      live_at_then = std::move(live);
    });
    REQUIRE(run_until(io, [&] { return calls > 0; }));
    CHECK(live_at_then == std::vector<std::string>{});
    CHECK(waited >= 300ms);
    CHECK(seen.table_clears == 2);
    CHECK(invalidator.all_reachable());
    run_for(io, 100ms);
    CHECK(calls == 1);
    invalidator.stop();
    run_until(io, [&] { return !invalidator.running(); });
  }
}

TEST_CASE("start's `then` waits at most first_revoke_wait for a socket that does not answer, one that "
          "cannot be reached fails at once", "[haproxy_invalidator][start]") {
  UnixListener silent;  // connects, never answers
  const std::string nobody = "/tmp/director-invalidator-nobody-listens-here.sock";
  boost::asio::io_context io;
  Seen seen;
  HaproxyInvalidatorSettings settings;
  settings.command_timeout = 1500ms;
  settings.first_revoke_wait = 400ms;

  SECTION("silent: then after first_revoke_wait, the socket unreachable") {
    settings.sockets = {silent.path()};
  }
  SECTION("nobody listens: then at once") {
    settings.sockets = {nobody};
    settings.first_revoke_wait = 5s;
  }
  HaproxyInvalidator invalidator(io.get_executor(), settings, seen.hooks());
  int calls = 0;
  const auto started = std::chrono::steady_clock::now();
  std::chrono::steady_clock::duration waited{};
  invalidator.start([&] {
    ++calls;
    waited = std::chrono::steady_clock::now() - started;
  });
  REQUIRE(run_until(io, [&] { return calls > 0; }, 3s));
  if (settings.sockets.front() == silent.path()) {
    CHECK(waited >= 400ms);
    CHECK(waited < 1200ms);  // not the command's 1.5 s
  } else {
    CHECK(waited < 2s);  // not first_revoke_wait's 5 s
  }
  CHECK_FALSE(invalidator.all_reachable());
  CHECK_FALSE(invalidator.status()[0].reachable);
  run_for(io, 100ms);
  CHECK(calls == 1);
  invalidator.stop();
  REQUIRE(run_until(io, [&] { return !invalidator.running(); }, 3s));
  CHECK(calls == 1);
}

TEST_CASE("start's `then` is never called after stop(), and at once without sockets", "[haproxy_invalidator][start]") {
  boost::asio::io_context io;
  {
    UnixListener silent;
    HaproxyInvalidatorSettings settings;
    settings.sockets = {silent.path()};
    settings.command_timeout = 300ms;
    settings.first_revoke_wait = 200ms;
    HaproxyInvalidator invalidator(io.get_executor(), settings);
    int calls = 0;
    invalidator.start([&] { ++calls; });
    invalidator.stop();
    REQUIRE(run_until(io, [&] { return !invalidator.running(); }));
    CHECK(calls == 0);
  }
  HaproxyInvalidator none(io.get_executor(), HaproxyInvalidatorSettings{});
  int calls = 0;
  none.start([&] { ++calls; });
  CHECK(calls == 1);
}

TEST_CASE("the whole-table listing has its own, longer bound than a command", "[haproxy_invalidator][timeouts]") {
  // The defaults: a command 1 s, the listing of up to 200k rows 10 s.
  CHECK(HaproxyInvalidatorSettings{}.command_timeout == 1s);
  CHECK(HaproxyInvalidatorSettings{}.listing_timeout == 10s);
  for (const auto& version : versions_or_skip()) {
    INFO("HAProxy " << version.name);
    Haproxy haproxy({.executable = version.executable});
    haproxy.store("alice");
    const auto request = [](std::string_view prefix) {
      return [prefix](std::string_view command) { return command.starts_with(prefix); };
    };
    HaproxyInvalidatorSettings settings;
    settings.command_timeout = 250ms;
    settings.listing_timeout = 3s;
    {
      INFO("a listing slower than a command's bound: the revoke succeeds");
      DelayingSocket slow(haproxy, request("show table fast_path data.gpt gt 0"), 700ms);
      settings.sockets = {slow.path()};
      boost::asio::io_context io;
      Seen seen;
      const Running running(io, seen, settings);
      REQUIRE(run_until(io, [&] { return seen.reachable(); }));
      CHECK(seen.table_clears == 1);
      CHECK(seen.failed == 0);
      CHECK(haproxy.live_keys().empty());
    }
    {
      INFO("a plain command as slow: it fails, the socket is unreachable");
      haproxy.store("bob");
      DelayingSocket slow(haproxy, request("clear table"), 700ms);
      settings.sockets = {slow.path()};
      boost::asio::io_context io;
      Seen seen;
      const Running running(io, seen, settings);
      REQUIRE(run_until(io, [&] { return seen.failed >= 1; }));
      CHECK_FALSE(seen.reachable());
      CHECK(running.invalidator->status()[0].last_error.find("no answer within 250ms") != std::string::npos);
    }
  }
}
