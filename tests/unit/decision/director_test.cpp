#include "decision/director.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

using namespace std::chrono_literals;
using namespace director::decision;

namespace Catch {
template <>
struct StringMaker<Reason> {
  static std::string convert(Reason reason) { return std::string(to_string(reason)); }
};
}  // namespace Catch

namespace {

// The fake clock: time points built by hand from an arbitrary origin.
constexpr TimePoint kStart{};
TimePoint at(Duration since_start) { return kStart + since_start; }

Address ip(const char* text) { return boost::asio::ip::make_address(text); }

// The defaults of Settings, spelled out so that the TTL tests read on their own.
Settings test_settings() {
  Settings settings;
  settings.host_prefix = "vscode";
  settings.container_port = 8080;
  settings.alive_ttl = 800ms;
  settings.refresh_after = 300ms;
  settings.dead_ttl = 500ms;
  settings.stale_if_error = 60s;
  settings.capacity = 100;
  return settings;
}

CheckResult reached(Address address, Duration latency = 3ms) {
  return {DnsOutcome::ok, address, ProbeOutcome::ok, latency};
}
CheckResult probe_outcome(Address address, ProbeOutcome probe) {
  return {DnsOutcome::ok, address, probe, 5ms};
}
CheckResult no_such_host() { return {DnsOutcome::no_such_host, std::nullopt, ProbeOutcome::not_run, {}}; }
CheckResult dns_failed() { return {DnsOutcome::error, std::nullopt, ProbeOutcome::not_run, {}}; }
CheckResult dns_failed_fallback_probed(Address fallback, ProbeOutcome probe) {
  return {DnsOutcome::error, fallback, probe, 4ms};
}

// Brings `username` to a completed check with `result` at `now`; returns the completion.
Completion check_once(Director& director, std::string_view username, const CheckResult& result,
                      TimePoint now, WaiterId waiter = 1) {
  const DecideResult decision = director.decide(username, waiter, now);
  REQUIRE_FALSE(decision.answer);
  REQUIRE(decision.start_check);
  return director.complete(decision.start_check->label, result, now);
}

}  // namespace

TEST_CASE("director: reason tokens are the HAProxy contract", "[director]") {
  CHECK(to_string(Reason::ok) == "ok");
  CHECK(to_string(Reason::missing_username) == "missing-username");
  CHECK(to_string(Reason::invalid_username) == "invalid-username");
  CHECK(to_string(Reason::no_such_host) == "no-such-host");
  CHECK(to_string(Reason::dns_error) == "dns-error");
  CHECK(to_string(Reason::refused) == "refused");
  CHECK(to_string(Reason::timeout) == "timeout");
  CHECK(to_string(Reason::probe_failed) == "probe-failed");
}

TEST_CASE("director: a missing or empty username is answered, never cached", "[director]") {
  Director director(test_settings());
  for (const std::optional<std::string_view> username :
       {std::optional<std::string_view>{}, std::optional<std::string_view>{""}}) {
    const DecideResult decision = director.decide(username, 1, at(0ms));
    REQUIRE(decision.answer);
    CHECK_FALSE(decision.answer->alive);
    CHECK(decision.answer->reason == Reason::missing_username);
    CHECK(decision.answer->label.empty());
    CHECK(decision.answer->host.empty());
    CHECK(decision.answer->port == 0);
    CHECK_FALSE(decision.start_check);
  }
  CHECK(director.size() == 0);
  CHECK(director.stats().missing_usernames == 2);
  CHECK(director.stats().hits == 0);
  CHECK(director.stats().misses == 0);
}

TEST_CASE("director: hostile names are refused in strict mode and never cached", "[director]") {
  Settings settings = test_settings();
  settings.username_mode = UsernameMode::strict;
  Director director(settings);
  const std::vector<std::string> hostile = {
      "jack.evil.example", "jack:22", "169.254.169.254", "Alice", std::string("a\0b", 3),
      "alice-0123456789abcdef", std::string(200, 'a')};
  WaiterId waiter = 1;
  for (const std::string& name : hostile) {
    CAPTURE(name);
    const DecideResult decision = director.decide(name, waiter++, at(0ms));
    REQUIRE(decision.answer);
    CHECK_FALSE(decision.answer->alive);
    CHECK(decision.answer->reason == Reason::invalid_username);
    CHECK(decision.answer->host.empty());
    CHECK_FALSE(decision.start_check);
  }
  CHECK(director.size() == 0);
  CHECK(director.stats().invalid_usernames == hostile.size());
  CHECK(director.stats().misses == 0);
}

TEST_CASE("director: escape mode routes hostile names to distinct escaped hosts", "[director]") {
  Settings settings = test_settings();
  settings.username_mode = UsernameMode::escape;
  Director director(settings);

  const DecideResult upper = director.decide("Alice", 1, at(0ms));
  const DecideResult lower = director.decide("alice", 2, at(0ms));
  const DecideResult dotted = director.decide("jack.evil.example", 3, at(0ms));
  REQUIRE(upper.start_check);
  REQUIRE(lower.start_check);
  REQUIRE(dotted.start_check);
  CHECK(upper.start_check->host == "vscode-alice-3bc51062973c458d");
  CHECK(lower.start_check->host == "vscode-alice");
  CHECK(dotted.start_check->host == "vscode-jack-evil-example-2af8659d7c9424d3");
  CHECK(director.size() == 3);
}

TEST_CASE("director: a cold user starts one check and waits", "[director]") {
  Director director(test_settings());
  const DecideResult decision = director.decide("alice", 7, at(0ms));
  CHECK_FALSE(decision.answer);
  REQUIRE(decision.start_check);
  CHECK(decision.start_check->label == "alice");
  CHECK(decision.start_check->host == "vscode-alice");
  CHECK(decision.start_check->port == 8080);
  CHECK_FALSE(decision.start_check->fallback);

  CHECK(director.size() == 1);
  const auto user = director.find_user("alice");
  REQUIRE(user);
  CHECK(user->checking);
  CHECK(user->waiters == 1);
  CHECK_FALSE(user->last_checked);
  CHECK(user->last_seen == at(0ms));
}

TEST_CASE("director: single flight, 100 requests share one check", "[director]") {
  Director director(test_settings());
  int checks = 0;
  for (WaiterId waiter = 1; waiter <= 100; ++waiter) {
    const DecideResult decision =
        director.decide("alice", waiter, at(std::chrono::milliseconds(waiter)));
    CHECK_FALSE(decision.answer);
    checks += decision.start_check ? 1 : 0;
  }
  CHECK(checks == 1);
  CHECK(director.find_user("alice")->waiters == 100);

  const Completion completion = director.complete("alice", reached(ip("10.0.0.5")), at(150ms));
  std::vector<WaiterId> expected;
  for (WaiterId waiter = 1; waiter <= 100; ++waiter) {
    expected.push_back(waiter);
  }
  CHECK(completion.waiters == expected);
  CHECK(completion.answer.alive);
  CHECK(completion.answer.reason == Reason::ok);
  CHECK(completion.answer.label == "alice");
  CHECK(completion.answer.host == "vscode-alice");
  CHECK(completion.answer.address == ip("10.0.0.5"));
  CHECK(completion.answer.port == 8080);
  CHECK(completion.answer.age == 0ms);

  const DecideResult after = director.decide("alice", 101, at(151ms));
  REQUIRE(after.answer);
  CHECK(after.answer->alive);
  CHECK(after.answer->address == ip("10.0.0.5"));
  CHECK(after.answer->age == 1ms);  // the check completed at 150 ms
  CHECK_FALSE(after.start_check);

  CHECK(director.stats().misses == 100);
  CHECK(director.stats().hits == 1);
  CHECK(director.stats().checks_started == 1);
  CHECK_FALSE(director.find_user("alice")->checking);
}

TEST_CASE("director: alive answers are fresh strictly before alive_ttl", "[director]") {
  Settings settings = test_settings();
  settings.refresh_after = settings.alive_ttl;  // no background refresh in this test
  Director director(settings);
  check_once(director, "alice", reached(ip("10.0.0.5")), at(1000ms));

  const DecideResult before = director.decide("alice", 2, at(1799ms));
  REQUIRE(before.answer);
  CHECK(before.answer->alive);
  CHECK_FALSE(before.start_check);

  const DecideResult expired = director.decide("alice", 3, at(1800ms));
  CHECK_FALSE(expired.answer);
  REQUIRE(expired.start_check);
  CHECK(expired.start_check->fallback == ip("10.0.0.5"));
}

TEST_CASE("director: background refresh starts exactly at refresh_after", "[director]") {
  Director director(test_settings());
  check_once(director, "alice", reached(ip("10.0.0.5")), at(1000ms));

  const DecideResult early = director.decide("alice", 2, at(1299ms));
  REQUIRE(early.answer);
  CHECK_FALSE(early.start_check);

  // Served from the cache and a refresh starts; the request is not queued.
  const DecideResult refresh = director.decide("alice", 3, at(1300ms));
  REQUIRE(refresh.answer);
  CHECK(refresh.answer->alive);
  CHECK(refresh.answer->age == 300ms);
  REQUIRE(refresh.start_check);
  CHECK(refresh.start_check->fallback == ip("10.0.0.5"));
  CHECK(director.find_user("alice")->waiters == 0);

  // While it runs: still answered, no second check.
  const DecideResult during = director.decide("alice", 4, at(1799ms));
  REQUIRE(during.answer);
  CHECK(during.answer->alive);
  CHECK_FALSE(during.start_check);

  // The alive answer expires while the refresh is in flight: queued, no second check.
  const DecideResult expired = director.decide("alice", 5, at(1800ms));
  CHECK_FALSE(expired.answer);
  CHECK_FALSE(expired.start_check);

  const Completion completion = director.complete("alice", reached(ip("10.0.0.6")), at(1850ms));
  CHECK(completion.waiters == std::vector<WaiterId>{5});
  CHECK(completion.answer.address == ip("10.0.0.6"));

  // The refresh resets the clock of the entry.
  const DecideResult renewed = director.decide("alice", 6, at(2149ms));
  REQUIRE(renewed.answer);
  CHECK(renewed.answer->address == ip("10.0.0.6"));
  CHECK_FALSE(renewed.start_check);

  CHECK(director.stats().hits == 4);
  CHECK(director.stats().misses == 2);
  CHECK(director.stats().checks_started == 2);
}

TEST_CASE("director: a refresh that finds the container gone is served next", "[director]") {
  Director director(test_settings());
  check_once(director, "alice", reached(ip("10.0.0.5")), at(0ms));
  const DecideResult refresh = director.decide("alice", 2, at(400ms));
  REQUIRE(refresh.start_check);
  const Completion completion =
      director.complete("alice", probe_outcome(ip("10.0.0.5"), ProbeOutcome::refused), at(410ms));
  CHECK(completion.waiters.empty());
  CHECK_FALSE(completion.answer.alive);

  const DecideResult after = director.decide("alice", 3, at(420ms));
  REQUIRE(after.answer);
  CHECK_FALSE(after.answer->alive);
  CHECK(after.answer->reason == Reason::refused);
}

TEST_CASE("director: not-alive answers are fresh strictly before dead_ttl", "[director]") {
  Director director(test_settings());
  check_once(director, "alice", probe_outcome(ip("10.0.0.5"), ProbeOutcome::refused), at(1000ms));

  // Past refresh_after but not-alive answers are never refreshed in the background.
  const DecideResult before = director.decide("alice", 2, at(1499ms));
  REQUIRE(before.answer);
  CHECK_FALSE(before.answer->alive);
  CHECK(before.answer->reason == Reason::refused);
  CHECK(before.answer->address == ip("10.0.0.5"));  // for logs
  CHECK(before.answer->port == 0);
  CHECK(before.answer->host == "vscode-alice");
  CHECK_FALSE(before.start_check);

  const DecideResult expired = director.decide("alice", 3, at(1500ms));
  CHECK_FALSE(expired.answer);
  REQUIRE(expired.start_check);
  CHECK_FALSE(expired.start_check->fallback);  // last known not alive
}

TEST_CASE("director: probe and DNS outcomes map to reasons", "[director]") {
  struct Row {
    CheckResult result;
    bool alive;
    Reason reason;
  };
  const Address address = ip("10.0.0.5");
  const std::vector<Row> rows = {
      {reached(address), true, Reason::ok},
      {probe_outcome(address, ProbeOutcome::refused), false, Reason::refused},
      {probe_outcome(address, ProbeOutcome::timeout), false, Reason::timeout},
      {probe_outcome(address, ProbeOutcome::failed), false, Reason::probe_failed},
      {probe_outcome(address, ProbeOutcome::not_run), false, Reason::probe_failed},
      {no_such_host(), false, Reason::no_such_host},
      {dns_failed(), false, Reason::dns_error},
      // Malformed: "ok" without an address cannot be routed.
      {{DnsOutcome::ok, std::nullopt, ProbeOutcome::ok, {}}, false, Reason::dns_error},
      // no_such_host is authoritative, whatever else the result carries.
      {{DnsOutcome::no_such_host, address, ProbeOutcome::ok, {}}, false, Reason::no_such_host},
  };
  for (std::size_t i = 0; i < rows.size(); ++i) {
    CAPTURE(i);
    Director director(test_settings());
    const Completion completion = check_once(director, "alice", rows[i].result, at(0ms));
    CHECK(completion.answer.alive == rows[i].alive);
    CHECK(completion.answer.reason == rows[i].reason);
    CHECK(completion.answer.port == (rows[i].alive ? 8080 : 0));
    if (rows[i].reason == Reason::no_such_host) {
      CHECK_FALSE(completion.answer.address);
    }
  }
}

TEST_CASE("director: the fallback is offered only when last known alive", "[director]") {
  Director director(test_settings());

  SECTION("never checked") {
    const DecideResult decision = director.decide("alice", 1, at(0ms));
    REQUIRE(decision.start_check);
    CHECK_FALSE(decision.start_check->fallback);
  }
  SECTION("last alive") {
    check_once(director, "alice", reached(ip("10.0.0.5")), at(0ms));
    const DecideResult decision = director.decide("alice", 2, at(800ms));
    REQUIRE(decision.start_check);
    CHECK(decision.start_check->fallback == ip("10.0.0.5"));
  }
  SECTION("last refused") {
    check_once(director, "alice", probe_outcome(ip("10.0.0.5"), ProbeOutcome::refused), at(0ms));
    const DecideResult decision = director.decide("alice", 2, at(500ms));
    REQUIRE(decision.start_check);
    CHECK_FALSE(decision.start_check->fallback);
  }
  SECTION("last no such host") {
    check_once(director, "alice", no_such_host(), at(0ms));
    const DecideResult decision = director.decide("alice", 2, at(500ms));
    REQUIRE(decision.start_check);
    CHECK_FALSE(decision.start_check->fallback);
  }
}

TEST_CASE("director: DNS failure with a working fallback keeps the user alive", "[director]") {
  Director director(test_settings());
  check_once(director, "alice", reached(ip("10.0.0.5")), at(0ms));

  const DecideResult stale = director.decide("alice", 2, at(800ms));
  REQUIRE(stale.start_check);
  REQUIRE(stale.start_check->fallback == ip("10.0.0.5"));

  const Completion completion = director.complete(
      "alice", dns_failed_fallback_probed(ip("10.0.0.5"), ProbeOutcome::ok), at(810ms));
  CHECK(completion.answer.alive);
  CHECK(completion.answer.reason == Reason::ok);
  CHECK(completion.answer.address == ip("10.0.0.5"));
  CHECK(completion.waiters == std::vector<WaiterId>{2});
  CHECK(director.stats().stale_dns == 1);

  // Still alive: the next check offers the fallback again.
  const DecideResult next = director.decide("alice", 3, at(1610ms));
  REQUIRE(next.start_check);
  CHECK(next.start_check->fallback == ip("10.0.0.5"));
}

TEST_CASE("director: the fallback is offered only within stale_if_error of the last answer from DNS",
          "[director]") {
  Director director(test_settings());
  check_once(director, "alice", reached(ip("10.0.0.5")), at(0ms));

  // DNS keeps failing; the fallback keeps answering. Each stale check is offered the fallback
  // while DNS's last answer (at 0 s) is younger than 60 s, and never again after that.
  TimePoint now = at(0ms);
  WaiterId waiter = 2;
  for (;;) {
    now += 800ms;
    const DecideResult decision = director.decide("alice", waiter++, now);
    REQUIRE(decision.start_check);
    if (now - at(0ms) >= 60s) {
      CHECK_FALSE(decision.start_check->fallback);
      const Completion completion = director.complete("alice", dns_failed(), now);
      CHECK_FALSE(completion.answer.alive);
      CHECK(completion.answer.reason == Reason::dns_error);
      break;
    }
    REQUIRE(decision.start_check->fallback == ip("10.0.0.5"));
    const Completion completion =
        director.complete("alice", dns_failed_fallback_probed(ip("10.0.0.5"), ProbeOutcome::ok), now);
    REQUIRE(completion.answer.alive);
  }
  CHECK(now == at(60000ms));

  // DNS is back: its answer restarts the bound.
  const DecideResult back = director.decide("alice", waiter++, now + 500ms);
  REQUIRE(back.start_check);
  director.complete("alice", reached(ip("10.0.0.5")), now + 500ms);
  const DecideResult later = director.decide("alice", waiter++, now + 1300ms);
  REQUIRE(later.start_check);
  CHECK(later.start_check->fallback == ip("10.0.0.5"));
}

TEST_CASE("director: stale_if_error 0 never offers the fallback", "[director]") {
  Settings settings = test_settings();
  settings.stale_if_error = 0s;
  Director director(settings);
  check_once(director, "alice", reached(ip("10.0.0.5")), at(0ms));
  const DecideResult refresh = director.decide("alice", 2, at(300ms));  // served, refreshed
  REQUIRE(refresh.answer);
  REQUIRE(refresh.start_check);
  CHECK_FALSE(refresh.start_check->fallback);
}

TEST_CASE("director: DNS failure whose fallback does not answer", "[director]") {
  Director director(test_settings());
  check_once(director, "alice", reached(ip("10.0.0.5")), at(0ms));
  director.decide("alice", 2, at(800ms));
  const Completion completion = director.complete(
      "alice", dns_failed_fallback_probed(ip("10.0.0.5"), ProbeOutcome::refused), at(810ms));
  CHECK_FALSE(completion.answer.alive);
  CHECK(completion.answer.reason == Reason::refused);
  CHECK(director.stats().stale_dns == 1);  // the last known address was probed

  const DecideResult next = director.decide("alice", 3, at(1310ms));
  REQUIRE(next.start_check);
  CHECK_FALSE(next.start_check->fallback);
}

TEST_CASE("director: stale_dns counts every probe of a last known address, whatever its outcome",
          "[director]") {
  // director_stale_dns_answers_total (docs/metrics.md): checks whose DNS lookup failed and that
  // probed the last known address instead.
  const ProbeOutcome outcome =
      GENERATE(ProbeOutcome::ok, ProbeOutcome::refused, ProbeOutcome::timeout, ProbeOutcome::failed);
  Director director(test_settings());
  check_once(director, "alice", reached(ip("10.0.0.5")), at(0ms));
  const DecideResult stale = director.decide("alice", 2, at(800ms));
  REQUIRE(stale.start_check);
  REQUIRE(stale.start_check->fallback == ip("10.0.0.5"));
  director.complete("alice", dns_failed_fallback_probed(ip("10.0.0.5"), outcome), at(810ms));
  CHECK(director.stats().stale_dns == 1);
}

TEST_CASE("director: DNS failure without any address", "[director]") {
  Director director(test_settings());
  const Completion completion = check_once(director, "alice", dns_failed(), at(0ms));
  CHECK_FALSE(completion.answer.alive);
  CHECK(completion.answer.reason == Reason::dns_error);
  CHECK_FALSE(completion.answer.address);
  CHECK(director.stats().stale_dns == 0);
}

TEST_CASE("director: no_such_host forgets the last address", "[director]") {
  Director director(test_settings());
  check_once(director, "alice", reached(ip("10.0.0.5")), at(0ms));
  director.decide("alice", 2, at(800ms));
  const Completion completion = director.complete("alice", no_such_host(), at(810ms));
  CHECK_FALSE(completion.answer.alive);
  CHECK(completion.answer.reason == Reason::no_such_host);
  CHECK_FALSE(completion.answer.address);
  CHECK(director.stats().stale_dns == 0);

  const DecideResult next = director.decide("alice", 3, at(1310ms));
  REQUIRE(next.start_check);
  CHECK_FALSE(next.start_check->fallback);
}

TEST_CASE("director: completion reports state changes for logs", "[director]") {
  Director director(test_settings());
  const Completion first = check_once(director, "alice", reached(ip("10.0.0.5")), at(0ms));
  CHECK(first.alive_changed);
  CHECK_FALSE(first.previous_reason);

  director.decide("alice", 2, at(800ms));
  const Completion same = director.complete("alice", reached(ip("10.0.0.5")), at(810ms));
  CHECK_FALSE(same.alive_changed);
  CHECK(same.previous_reason == Reason::ok);

  director.decide("alice", 3, at(1610ms));
  const Completion down =
      director.complete("alice", probe_outcome(ip("10.0.0.5"), ProbeOutcome::timeout), at(1620ms));
  CHECK(down.alive_changed);
  CHECK(down.previous_reason == Reason::ok);

  director.decide("alice", 4, at(2120ms));
  const Completion still_down =
      director.complete("alice", probe_outcome(ip("10.0.0.5"), ProbeOutcome::refused), at(2130ms));
  CHECK_FALSE(still_down.alive_changed);
  CHECK(still_down.previous_reason == Reason::timeout);
}

TEST_CASE("director: LRU evicts the least recently used user", "[director]") {
  Settings settings = test_settings();
  settings.capacity = 3;
  Director director(settings);
  check_once(director, "a", reached(ip("10.0.0.1")), at(0ms));
  check_once(director, "b", reached(ip("10.0.0.2")), at(1ms));
  check_once(director, "c", reached(ip("10.0.0.3")), at(2ms));
  REQUIRE(director.decide("a", 9, at(3ms)).answer);  // a is now the most recent

  check_once(director, "d", reached(ip("10.0.0.4")), at(4ms));
  CHECK(director.size() == 3);
  CHECK_FALSE(director.find_user("b"));
  CHECK(director.stats().evictions == 1);

  std::vector<std::string_view> order;
  for (const UserView& user : director.users(0, 10)) {
    order.push_back(user.label);
  }
  CHECK(order == std::vector<std::string_view>{"d", "a", "c"});

  check_once(director, "e", reached(ip("10.0.0.5")), at(5ms));
  CHECK_FALSE(director.find_user("c"));
  CHECK(director.find_user("a"));
  CHECK(director.stats().evictions == 2);
}

TEST_CASE("director: users with a check in flight are never evicted", "[director]") {
  Settings settings = test_settings();
  settings.capacity = 2;
  Director director(settings);

  SECTION("a pinned entry at the tail is skipped") {
    REQUIRE(director.decide("a", 1, at(0ms)).start_check);  // in flight, least recent
    check_once(director, "b", reached(ip("10.0.0.2")), at(1ms), 2);
    check_once(director, "c", reached(ip("10.0.0.3")), at(2ms), 3);
    CHECK(director.size() == 2);
    CHECK(director.find_user("a"));
    CHECK_FALSE(director.find_user("b"));

    const Completion completion = director.complete("a", reached(ip("10.0.0.1")), at(3ms));
    CHECK(completion.waiters == std::vector<WaiterId>{1});
  }

  SECTION("all entries pinned: the bound yields, waiters are kept") {
    REQUIRE(director.decide("a", 1, at(0ms)).start_check);
    REQUIRE(director.decide("b", 2, at(1ms)).start_check);
    REQUIRE(director.decide("c", 3, at(2ms)).start_check);
    CHECK(director.size() == 3);
    CHECK(director.stats().evictions == 0);

    // Once a's check completes, a is evictable and the least recent.
    const Completion a = director.complete("a", reached(ip("10.0.0.1")), at(3ms));
    CHECK(a.waiters == std::vector<WaiterId>{1});
    CHECK(a.answer.alive);
    CHECK(director.size() == 2);
    CHECK_FALSE(director.find_user("a"));
    CHECK(director.stats().evictions == 1);

    CHECK(director.complete("b", reached(ip("10.0.0.2")), at(4ms)).waiters ==
          std::vector<WaiterId>{2});
    CHECK(director.complete("c", reached(ip("10.0.0.3")), at(5ms)).waiters ==
          std::vector<WaiterId>{3});
    CHECK(director.size() == 2);
  }
}

TEST_CASE("director: capacity holds under many users", "[director]") {
  Settings settings = test_settings();
  settings.capacity = 10;
  Director director(settings);
  for (int i = 0; i < 1000; ++i) {
    check_once(director, "user" + std::to_string(i), reached(ip("10.0.0.1")),
               at(std::chrono::milliseconds(i)), static_cast<WaiterId>(i));
    REQUIRE(director.size() <= 10);
  }
  CHECK(director.size() == 10);
  CHECK(director.stats().evictions == 990);
  CHECK(director.find_user("user999"));
  CHECK(director.find_user("user990"));
  CHECK_FALSE(director.find_user("user989"));
}

TEST_CASE("director: a waiter id can be reused once released", "[director]") {
  Director director(test_settings());
  check_once(director, "alice", reached(ip("10.0.0.5")), at(0ms), 1);
  director.decide("bob", 1, at(1ms));
  CHECK(director.complete("bob", reached(ip("10.0.0.6")), at(2ms)).waiters == std::vector<WaiterId>{1});
}

TEST_CASE("director: completing an unknown label is harmless", "[director]") {
  Director director(test_settings());
  const Completion completion = director.complete("ghost", reached(ip("10.0.0.5")), at(0ms));
  CHECK(completion.waiters.empty());
  CHECK(completion.answer.alive);
  CHECK(completion.answer.label == "ghost");
  CHECK(completion.answer.host == "vscode-ghost");
  CHECK_FALSE(completion.alive_changed);
  CHECK(director.size() == 0);

  // Twice for the same check: the second finds nobody waiting.
  director.decide("alice", 1, at(0ms));
  CHECK(director.complete("alice", reached(ip("10.0.0.5")), at(1ms)).waiters.size() == 1);
  CHECK(director.complete("alice", reached(ip("10.0.0.5")), at(2ms)).waiters.empty());
  CHECK(director.size() == 1);
}

TEST_CASE("director: the domain suffix completes the host", "[director]") {
  Settings settings = test_settings();
  settings.domain_suffix = "users.svc.cluster.local";
  settings.container_port = 3000;
  Director director(settings);

  const DecideResult decision = director.decide("alice", 1, at(0ms));
  REQUIRE(decision.start_check);
  CHECK(decision.start_check->host == "vscode-alice.users.svc.cluster.local");
  CHECK(decision.start_check->label == "alice");
  CHECK(decision.start_check->port == 3000);

  director.complete("alice", reached(ip("10.0.0.5")), at(1ms));
  const DecideResult hit = director.decide("alice", 2, at(2ms));
  REQUIRE(hit.answer);
  CHECK(hit.answer->host == "vscode-alice.users.svc.cluster.local");
  CHECK(hit.answer->label == "alice");
  CHECK(hit.answer->port == 3000);
  CHECK(director.find_user("alice")->host == "vscode-alice.users.svc.cluster.local");
}

TEST_CASE("director: user views show the cache state", "[director]") {
  Director director(test_settings());
  check_once(director, "alice", reached(ip("10.0.0.5"), 7ms), at(100ms));
  director.decide("alice", 2, at(150ms));
  director.decide("bob", 3, at(160ms));
  director.decide("carol", 4, at(170ms));

  const auto alice = director.find_user("alice");
  REQUIRE(alice);
  CHECK(alice->label == "alice");
  CHECK(alice->host == "vscode-alice");
  CHECK(alice->alive);
  CHECK(alice->reason == Reason::ok);
  CHECK(alice->address == ip("10.0.0.5"));
  CHECK(alice->last_checked == at(100ms));
  CHECK(alice->last_probe_latency == 7ms);
  CHECK(alice->last_seen == at(150ms));
  CHECK_FALSE(alice->checking);
  CHECK(alice->waiters == 0);

  const auto bob = director.find_user("bob");
  REQUIRE(bob);
  CHECK(bob->checking);
  CHECK(bob->waiters == 1);
  CHECK_FALSE(bob->last_checked);
  CHECK_FALSE(director.find_user("dave"));

  // Paging, most recent first.
  const std::vector<UserView> first = director.users(0, 2);
  REQUIRE(first.size() == 2);
  CHECK(first[0].label == "carol");
  CHECK(first[1].label == "bob");
  const std::vector<UserView> second = director.users(2, 2);
  REQUIRE(second.size() == 1);
  CHECK(second[0].label == "alice");
  CHECK(director.users(3, 2).empty());
  CHECK(director.users(0, 0).empty());
}

TEST_CASE("director: stats count exactly", "[director]") {
  Settings settings = test_settings();
  settings.capacity = 1;
  settings.username_mode = UsernameMode::strict;  // so that a name is refused
  Director director(settings);

  director.decide(std::nullopt, 1, at(0ms));             // missing
  director.decide("Bad.Name", 2, at(0ms));               // invalid
  director.decide("alice", 3, at(0ms));                  // miss, check 1
  director.decide("alice", 4, at(0ms));                  // miss
  director.complete("alice", reached(ip("10.0.0.5")), at(1ms));
  director.decide("alice", 5, at(2ms));                  // hit
  director.decide("alice", 6, at(301ms));                // hit, refresh (check 2)
  director.complete("alice", dns_failed_fallback_probed(ip("10.0.0.5"), ProbeOutcome::ok),
                    at(302ms));                          // stale DNS
  director.decide("bob", 7, at(303ms));                  // miss, check 3; alice evicted

  const Stats& stats = director.stats();
  CHECK(stats.missing_usernames == 1);
  CHECK(stats.invalid_usernames == 1);
  CHECK(stats.hits == 2);
  CHECK(stats.misses == 3);
  CHECK(stats.checks_started == 3);
  CHECK(stats.stale_dns == 1);
  CHECK(stats.evictions == 1);
  CHECK(director.size() == 1);
}
