// The decision core's event mode (docs/architecture.md; issue 11): what the feeds say decides how
// long an answer lives, feed changes invalidate, HAProxy is told what to forget, and retry.
#include "decision/director.hpp"
#include "decision/username.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using namespace director::decision;

namespace {

constexpr TimePoint kOrigin{};
TimePoint after(Duration since_origin) { return kOrigin + since_origin; }

// The defaults of Settings, spelled out so that the tests read on their own.
Settings event_settings() {
  Settings settings;
  settings.alive_ttl = 800ms;
  settings.refresh_after = 300ms;
  settings.dead_ttl = 500ms;
  settings.event_alive_ttl = 60s;  // event_refresh_after(label): 37.5 s to 45 s
  settings.fast_path_hold = 500ms;
  settings.retry_interval = 250ms;
  settings.capacity = 100;
  return settings;
}

// Where `label`'s background re-check starts and its long hold ends, with event_settings().
Duration refresh(std::string_view label) { return event_settings().event_refresh_after(label); }

ContainerState running(std::string id = "c1") { return {std::move(id), true, false}; }
ContainerState stopped(std::string id = "c1") { return {std::move(id), false, false}; }
ContainerState unhealthy(std::string id = "c1") { return {std::move(id), true, true}; }

using Containers = std::vector<std::pair<std::string, ContainerState>>;

CheckResult alive_result() {
  return {DnsOutcome::ok, boost::asio::ip::make_address("127.0.1.7"), ProbeOutcome::ok, 2ms};
}
CheckResult refused_result() {
  return {DnsOutcome::ok, boost::asio::ip::make_address("127.0.1.7"), ProbeOutcome::refused, 2ms};
}

// A request for `username` that must wait for a new check, which completes with `result`.
Completion check_now(Director& director, std::string_view username, const CheckResult& result, TimePoint now,
                     WaiterId waiter = 1) {
  const DecideResult decision = director.decide(username, waiter, now);
  REQUIRE_FALSE(decision.answer);
  REQUIRE(decision.start_check);
  return director.complete(decision.start_check->label, result, now);
}

// A request answered from the cache; returns the answer.
Answer hit(Director& director, std::string_view username, TimePoint now) {
  const DecideResult decision = director.decide(username, 9, now);
  REQUIRE(decision.answer);
  return *decision.answer;
}

bool has_key(const std::vector<std::string>& keys, std::string_view key) {
  return std::find(keys.begin(), keys.end(), key) != keys.end();
}

bool event_covered(const Director& director, std::string_view label) {
  const auto user = director.find_user(label);
  REQUIRE(user);
  return user->event_covered;
}

}  // namespace

TEST_CASE("events: HAProxy keys are only names of 1-64 characters of [A-Za-z0-9._@+-]", "[director][events]") {
  CHECK(is_haproxy_key("jack"));
  CHECK(is_haproxy_key("Jack.Smith+dev@example-1_x"));
  CHECK(is_haproxy_key(std::string(64, 'a')));
  CHECK_FALSE(is_haproxy_key(std::string(65, 'a')));
  CHECK_FALSE(is_haproxy_key(""));
  CHECK_FALSE(is_haproxy_key("a b"));
  CHECK_FALSE(is_haproxy_key("a;shutdown sessions"));
  CHECK_FALSE(is_haproxy_key("a\nb"));
  CHECK_FALSE(is_haproxy_key(std::string_view("a\0b", 3)));
  CHECK_FALSE(is_haproxy_key("j\xc3\xa4" "ck"));
}

TEST_CASE("events: a container id is kept as a fixed-size value that only compares", "[director][events]") {
  static_assert(sizeof(ContainerId) == 8);
  const std::string runtime_id(64, 'f');
  CHECK(ContainerId(runtime_id) == ContainerId(std::string_view(runtime_id)));
  CHECK(ContainerId("c1") == ContainerId(std::string("c1")));
  CHECK_FALSE(ContainerId("c1") == ContainerId("c2"));
  CHECK_FALSE(ContainerId(runtime_id) == ContainerId(std::string(63, 'f')));
  CHECK(ContainerId("").empty());
  CHECK(ContainerId() == ContainerId(""));
  CHECK_FALSE(ContainerId("c1").empty());
}

TEST_CASE("events: a hold never exceeds the 2 minutes HAProxy reuses an answer for", "[director][events]") {
  // haproxy.cfg treats an answer held more than 120000 ms ahead as not fresh: a longer hold
  // would send every request to the agent.
  Settings settings = event_settings();
  settings.event_alive_ttl = 60min;  // event_refresh_after(label): 37.5 min to 45 min
  Director director(settings);
  director.set_haproxy_invalidation(true);
  director.feed_snapshot(0, Containers{{"jack", running()}}, after(0ms));
  check_now(director, "jack", alive_result(), after(1s));
  CHECK(hit(director, "jack", after(2s)).hold == max_hold);
  CHECK(director.hold_at("jack", after(2s)) == max_hold);
  CHECK(hit(director, "jack", after(1s) + settings.event_refresh_after("jack") - 1min).hold == 1min);
  CHECK(max_hold == 120'000ms);
}

TEST_CASE("events: re-checks of users checked together spread over 5/8 to 3/4 of the event TTL",
          "[director][events]") {
  // An agent restart or a feed's re-list checks every user in one moment: were their re-checks
  // due together, every user's next requests would reach the agent together, and wait for it.
  const Settings settings = event_settings();
  std::array<int, 8> per_eighth{};  // of the 7.5 s from 37.5 s to 45 s
  std::set<Duration> points;
  for (int i = 0; i < 10'000; ++i) {
    const std::string label = "user" + std::to_string(i);
    const Duration point = settings.event_refresh_after(label);
    REQUIRE(point > settings.event_alive_ttl * 5 / 8);
    REQUIRE(point <= settings.latest_event_refresh());
    ++per_eighth.at(static_cast<std::size_t>((settings.latest_event_refresh() - point) / (settings.event_alive_ttl / 64)));
    points.insert(point);
  }
  for (const int labels : per_eighth) {
    CHECK(labels >= 1'100);  // 1,250 each if even
    CHECK(labels <= 1'400);
  }
  // Within an eighth too: 4,096 points, of which 10,000 random draws hit about 3,740.
  CHECK(points.size() >= 3'500);
  // The same point for a label on every run and platform (a hash of it), so that HAProxy's hold
  // and the agent's re-check agree, and a restarted agent keeps the spread.
  CHECK(settings.event_refresh_after("jack") == 42'886'962'891ns);
  CHECK(refresh("jack") == settings.event_refresh_after("jack"));
}

TEST_CASE("events: without a feed every alive answer keeps the TTL", "[director][events]") {
  Director director(event_settings());
  director.set_haproxy_invalidation(true);
  check_now(director, "jack", alive_result(), after(0ms));
  CHECK_FALSE(event_covered(director, "jack"));
  CHECK(hit(director, "jack", after(100ms)).hold == 400ms);
  CHECK_FALSE(director.decide("jack", 2, after(800ms)).answer);  // alive_ttl
  CHECK(director.covered_labels() == 0);
}

TEST_CASE("events: a label is covered only while a connected feed says running and not unhealthy",
          "[director][events]") {
  Director director(event_settings());
  director.set_haproxy_invalidation(true);
  director.feed_snapshot(0, Containers{{"jack", running()}, {"sick", unhealthy()}, {"gone", stopped()}}, after(0ms));
  CHECK(director.covered_labels() == 1);

  SECTION("running: the event TTL, refreshed in the background from the label's point") {
    check_now(director, "jack", alive_result(), after(1s));
    CHECK(event_covered(director, "jack"));
    const auto early = director.decide("jack", 2, after(1s) + refresh("jack") - 1ms);
    REQUIRE(early.answer);
    CHECK_FALSE(early.start_check);
    CHECK(early.answer->hold == 1ms);  // until event_refresh_after
    const auto late = director.decide("jack", 3, after(1s) + refresh("jack"));
    REQUIRE(late.answer);
    CHECK(late.start_check);
    CHECK(late.answer->hold == 0s);
    director.complete("jack", alive_result(), after(47s));
    CHECK(hit(director, "jack", after(47s) + refresh("jack") - 1s).hold == 1s);
    CHECK_FALSE(director.decide("jack", 4, after(47s + 60s)).answer);  // event_alive_ttl
  }
  SECTION("unhealthy or not running: the TTL") {
    check_now(director, "sick", alive_result(), after(1s));
    check_now(director, "gone", alive_result(), after(1s));
    CHECK_FALSE(event_covered(director, "sick"));
    CHECK_FALSE(event_covered(director, "gone"));
    CHECK_FALSE(director.decide("sick", 2, after(1s + 800ms)).answer);
    CHECK_FALSE(director.decide("gone", 3, after(1s + 800ms)).answer);
  }
  SECTION("a label no feed knows (an unmanaged container): the TTL") {
    check_now(director, "stranger", alive_result(), after(1s));
    CHECK_FALSE(event_covered(director, "stranger"));
    CHECK_FALSE(director.decide("stranger", 2, after(1s + 800ms)).answer);
  }
  SECTION("a lost feed covers nothing") {
    director.feed_lost(0, after(1s));
    CHECK(director.covered_labels() == 0);
    check_now(director, "jack", alive_result(), after(2s));
    CHECK_FALSE(event_covered(director, "jack"));
    CHECK_FALSE(director.decide("jack", 2, after(2s + 800ms)).answer);
  }
  SECTION("not-alive answers keep dead_ttl even when covered") {
    check_now(director, "jack", refused_result(), after(1s));
    CHECK_FALSE(event_covered(director, "jack"));
    CHECK_FALSE(director.decide("jack", 2, after(1s + 500ms)).answer);
  }
}

TEST_CASE("events: a first sighting as running invalidates nothing, the event TTL waits for a new check",
          "[director][events]") {
  Director director(event_settings());
  director.set_haproxy_invalidation(true);
  check_now(director, "jack", alive_result(), after(0ms));

  const Invalidation invalidation = director.feed_snapshot(0, Containers{{"jack", running()}}, after(100ms));
  CHECK(invalidation.checks.empty());
  CHECK(invalidation.haproxy_keys.empty());
  CHECK_FALSE(invalidation.clear_all);
  CHECK(director.stats().invalidations == 0);

  CHECK_FALSE(event_covered(director, "jack"));  // checked before the feed spoke
  const auto refresh = director.decide("jack", 2, after(350ms));
  REQUIRE(refresh.answer);
  CHECK(refresh.answer->hold == 150ms);  // fast_path_hold - age: still TTL mode
  REQUIRE(refresh.start_check);          // the TTL's background refresh, not a burst
  director.complete("jack", alive_result(), after(360ms));
  CHECK(event_covered(director, "jack"));
  CHECK(hit(director, "jack", after(30s)).hold > 10s);
}

TEST_CASE("events: a feed change invalidates the entry, clears its keys and starts one check",
          "[director][events]") {
  Settings settings = event_settings();
  settings.username_mode = UsernameMode::escape;
  Director director(settings);
  director.set_haproxy_invalidation(true);
  // "Jack" maps to an escaped label; HAProxy stores it under "Jack".
  director.feed_snapshot(0, Containers{}, after(0ms));
  const Completion first = check_now(director, "Jack", alive_result(), after(0ms));
  const std::string label = first.answer.label;
  REQUIRE(label != "Jack");

  Invalidation invalidation;
  SECTION("stopped") {
    director.feed_event(0, label, "", running(), after(10ms));
    check_now(director, "Jack", alive_result(), after(900ms));
    REQUIRE(event_covered(director, label));
    invalidation = director.feed_event(0, label, "", stopped(), after(1s));
  }
  SECTION("died (the same event as far as the core goes)") {
    director.feed_snapshot(0, Containers{{label, running()}}, after(10ms));
    invalidation = director.feed_event(0, label, "", stopped(), after(1s));
  }
  SECTION("unhealthy") {
    director.feed_event(0, label, "", running(), after(10ms));
    invalidation = director.feed_event(0, label, "", unhealthy(), after(1s));
  }
  SECTION("destroyed") {
    director.feed_event(0, label, "", running(), after(10ms));
    invalidation = director.feed_event(0, label, "", std::nullopt, after(1s));
  }
  SECTION("destroyed: a snapshot no longer lists it") {
    director.feed_snapshot(0, Containers{{label, running()}}, after(10ms));
    invalidation = director.feed_snapshot(0, Containers{}, after(1s));
  }
  SECTION("the container id changed") {
    director.feed_event(0, label, "", running("c1"), after(10ms));
    invalidation = director.feed_event(0, label, "", running("c2"), after(1s));
  }
  SECTION("started, from stopped") {
    // A first sighting as not running invalidates too; complete its check so that the entry
    // is cached and idle again.
    const Invalidation stop = director.feed_event(0, label, "", stopped(), after(10ms));
    REQUIRE(stop.checks.size() == 1);
    director.complete(label, refused_result(), after(30ms));
    invalidation = director.feed_event(0, label, "", running(), after(1s));
  }
  SECTION("a first sighting as not running") {
    invalidation = director.feed_snapshot(0, Containers{{label, stopped()}}, after(1s));
  }
  SECTION("a first sighting as running but unhealthy") {
    invalidation = director.feed_snapshot(0, Containers{{label, unhealthy()}}, after(1s));
  }

  const auto before = director.stats().invalidations;
  REQUIRE(before >= 1);
  CHECK(has_key(invalidation.haproxy_keys, label));
  CHECK(has_key(invalidation.haproxy_keys, "Jack"));
  CHECK(invalidation.haproxy_keys.size() == 2);
  REQUIRE(invalidation.checks.size() == 1);
  CHECK(invalidation.checks[0].label == label);
  // The next request waits for that check (no cached answer, no second check).
  const auto waiting = director.decide("Jack", 7, after(1s + 1ms));
  CHECK_FALSE(waiting.answer);
  CHECK_FALSE(waiting.start_check);
  const Completion done = director.complete(label, alive_result(), after(1s + 2ms));
  CHECK(done.waiters == std::vector<WaiterId>{7});
  CHECK_FALSE(done.start_check);
}

TEST_CASE("events: an invalidation while a check is in flight starts none, the check is repeated",
          "[director][events]") {
  Director director(event_settings());
  director.feed_snapshot(0, Containers{{"jack", running()}}, after(0ms));
  const auto first = director.decide("jack", 1, after(1ms));
  REQUIRE(first.start_check);
  const auto second = director.decide("jack", 2, after(2ms));
  CHECK_FALSE(second.start_check);

  const Invalidation invalidation = director.feed_event(0, "jack", "", stopped(), after(3ms));
  CHECK(invalidation.checks.empty());
  CHECK(invalidation.haproxy_keys == std::vector<std::string>{"jack"});

  // The check planned before the change: not trusted, repeated, waiters kept.
  const Completion overlapped = director.complete("jack", alive_result(), after(4ms));
  CHECK(overlapped.waiters.empty());
  REQUIRE(overlapped.start_check);
  CHECK(overlapped.start_check->label == "jack");
  CHECK(director.stats().rechecks == 1);
  CHECK_FALSE(director.decide("jack", 3, after(5ms)).answer);  // still waiting

  const Completion repeated = director.complete("jack", refused_result(), after(6ms));
  CHECK(repeated.waiters == std::vector<WaiterId>{1, 2, 3});
  CHECK_FALSE(repeated.start_check);
  CHECK_FALSE(repeated.answer.alive);
}

TEST_CASE("events: a label that flaps faster than a check gets its waiters answered after a bounded repeat",
          "[director][events]") {
  Director director(event_settings());
  director.set_haproxy_invalidation(true);
  director.feed_snapshot(0, Containers{{"jack", running()}}, after(0ms));
  const auto first = director.decide("jack", 1, after(1ms));
  REQUIRE(first.start_check);

  // Every check overlaps a change of the label's health: repeated kMaxRepeatedChecks times ...
  Duration now = 1ms;
  for (int repeat = 0; repeat < Director::kMaxRepeatedChecks; ++repeat) {
    director.feed_event(0, "jack", "", repeat % 2 == 0 ? unhealthy() : running(), after(now += 1ms));
    const Completion overlapped = director.complete("jack", alive_result(), after(now += 1ms));
    CHECK(overlapped.waiters.empty());
    REQUIRE(overlapped.start_check);
  }
  CHECK(director.stats().rechecks == Director::kMaxRepeatedChecks);

  // ... then the next overlapped check answers the waiters, under the TTLs, not the event TTL.
  director.feed_event(0, "jack", "", running("c2"), after(now += 1ms));
  const Completion answered = director.complete("jack", alive_result(), after(now += 1ms));
  CHECK(answered.waiters == std::vector<WaiterId>{1});
  CHECK_FALSE(answered.start_check);
  CHECK(answered.answer.alive);
  CHECK(answered.answer.hold == 500ms);  // fast_path_hold, not the event TTL's
  CHECK(director.stats().rechecks == Director::kMaxRepeatedChecks);
  CHECK_FALSE(event_covered(director, "jack"));
  CHECK(hit(director, "jack", after(now + 200ms)).alive);
  const auto expired = director.decide("jack", 2, after(now + 800ms));  // alive_ttl
  CHECK_FALSE(expired.answer);
  REQUIRE(expired.start_check);

  // The bound counts repeats in a row: a check that answers starts the count again.
  director.feed_event(0, "jack", "", stopped("c2"), after(now + 801ms));
  CHECK(director.complete("jack", refused_result(), after(now + 802ms)).waiters.empty());
  CHECK(director.stats().rechecks == Director::kMaxRepeatedChecks + 1);
  CHECK(director.complete("jack", refused_result(), after(now + 803ms)).waiters == std::vector<WaiterId>{2});
}

TEST_CASE("events: a check overlapping a first sighting is repeated too", "[director][events]") {
  Director director(event_settings());
  const auto first = director.decide("jack", 1, after(0ms));
  REQUIRE(first.start_check);
  const Invalidation invalidation = director.feed_snapshot(0, Containers{{"jack", running()}}, after(1ms));
  CHECK(invalidation.checks.empty());
  const Completion overlapped = director.complete("jack", alive_result(), after(2ms));
  CHECK(overlapped.waiters.empty());
  REQUIRE(overlapped.start_check);
  const Completion repeated = director.complete("jack", alive_result(), after(3ms));
  CHECK(repeated.waiters == std::vector<WaiterId>{1});
  CHECK(event_covered(director, "jack"));  // planned after the change
}

TEST_CASE("events: a lost feed clears every HAProxy table and invalidates what it covered", "[director][events]") {
  Director director(event_settings());
  director.feed_snapshot(0, Containers{{"jack", running()}, {"jill", stopped()}}, after(0ms));
  check_now(director, "jack", alive_result(), after(1ms));
  check_now(director, "jill", refused_result(), after(1ms));

  const Invalidation lost = director.feed_lost(0, after(1s));
  CHECK(lost.clear_all);  // HAProxy forgets every answer at once ...
  CHECK(lost.haproxy_keys.empty());
  CHECK(lost.checks.empty());  // ... but no user is probed before their next request
  CHECK(director.stats().invalidations == 0);
  CHECK(director.covered_labels() == 0);
  CHECK_FALSE(event_covered(director, "jack"));  // back to the TTL: the last check is 1 s old
  const auto next = director.decide("jack", 2, after(1s + 1ms));
  CHECK_FALSE(next.answer);
  REQUIRE(next.start_check);

  director.complete("jack", alive_result(), after(1s + 2ms));
  CHECK_FALSE(event_covered(director, "jack"));
  CHECK(hit(director, "jack", after(1s + 500ms)).alive);
  CHECK_FALSE(director.decide("jack", 3, after(1s + 900ms)).answer);  // the TTL, not the backstop

  // Lost again before reconnecting: nothing to take back, nothing to clear.
  const Invalidation again = director.feed_lost(0, after(2s));
  CHECK_FALSE(again.clear_all);
  CHECK(again.haproxy_keys.empty());
  CHECK(again.checks.empty());
  CHECK_FALSE(director.feed_lost(5, after(2s)).clear_all);  // a feed never heard of
}

TEST_CASE("events: with two feeds, a label one lost feed covered stays covered by the other",
          "[director][events]") {
  Director director(event_settings());
  director.feed_snapshot(0, Containers{{"jack", running()}}, after(0ms));
  director.feed_snapshot(1, Containers{{"jack", running()}, {"jill", running()}}, after(0ms));
  CHECK(director.covered_labels() == 2);
  check_now(director, "jack", alive_result(), after(1ms));
  CHECK(event_covered(director, "jack"));

  const Invalidation lost = director.feed_lost(1, after(1s));
  CHECK(lost.clear_all);  // jill's answers, held on feed 1's word, go
  CHECK(lost.checks.empty());
  CHECK(director.covered_labels() == 1);
  CHECK(event_covered(director, "jack"));  // feed 0 still vouches for it
  CHECK(hit(director, "jack", after(30s)).alive);
}

TEST_CASE("events: a feed that repeats itself changes nothing", "[director][events]") {
  Director director(event_settings());
  director.feed_snapshot(0, Containers{{"jack", running()}}, after(0ms));
  check_now(director, "jack", alive_result(), after(1ms));
  const Invalidation snapshot = director.feed_snapshot(0, Containers{{"jack", running()}}, after(1s));
  const Invalidation event = director.feed_event(0, "jack", "", running(), after(2s));
  CHECK(snapshot.checks.empty());
  CHECK(snapshot.haproxy_keys.empty());
  CHECK(event.checks.empty());
  CHECK(event.haproxy_keys.empty());
  CHECK(event_covered(director, "jack"));
  CHECK(director.stats().invalidations == 0);
}

TEST_CASE("events: a label that is not cached clears only its own HAProxy key, if it is one",
          "[director][events]") {
  Director director(event_settings());
  CHECK(director.feed_snapshot(0, Containers{{"jack", running()}}, after(0ms)).haproxy_keys.empty());
  const Invalidation stop = director.feed_event(0, "jack", "", stopped(), after(1ms));
  CHECK(stop.haproxy_keys == std::vector<std::string>{"jack"});  // an agent restart or another agent
  CHECK(stop.checks.empty());
  CHECK(director.stats().invalidations == 0);
  CHECK(director.size() == 0);

  // Labels come from the network: never a key outside the charset (CLI injection).
  for (const std::string& hostile : {std::string("a;shutdown sessions"), std::string("a b"), std::string(65, 'a'), std::string("a\nb")}) {
    director.feed_event(0, hostile, "", running(), after(2ms));
    CHECK(director.feed_event(0, hostile, "", std::nullopt, after(3ms)).haproxy_keys.empty());
  }
}

TEST_CASE("events: an event's username is cleared in HAProxy whichever agent answered it", "[director][events]") {
  // An escaped user's answer is held in HAProxy under the raw username, which only the agent that
  // answered remembers; the event names it, so every agent revokes it.
  const std::string jack = "Jack.Doe@Example.com";
  const auto mapped = map_username(jack, UsernameMode::escape, "vscode");
  REQUIRE(mapped);
  const std::string label = *mapped;
  REQUIRE(label != jack);
  Director director(event_settings());
  director.feed_snapshot(0, Containers{{label, running()}}, after(0ms));

  SECTION("not cached here: the label and the username") {
    const Invalidation stop = director.feed_event(0, label, jack, stopped(), after(1ms));
    CHECK(stop.haproxy_keys == std::vector<std::string>{label, jack});
    CHECK_FALSE(stop.clear_all);
  }
  SECTION("cached here under that username: each key once") {
    check_now(director, jack, alive_result(), after(1ms));
    const Invalidation stop = director.feed_event(0, label, jack, stopped(), after(2ms));
    CHECK(stop.haproxy_keys == std::vector<std::string>{label, jack});
  }
  SECTION("a change that invalidates nothing revokes nothing") {
    CHECK(director.feed_event(0, "jill", "Jill@Example.com", running(), after(1ms)).haproxy_keys.empty());
  }
  SECTION("the label as username, or one that is not a key, adds nothing") {
    CHECK(director.feed_event(0, label, label, stopped(), after(1ms)).haproxy_keys == std::vector<std::string>{label});
    director.feed_event(0, label, "", running(), after(2ms));
    CHECK(director.feed_event(0, label, "a;shutdown sessions", stopped(), after(3ms)).haproxy_keys ==
          std::vector<std::string>{label});
  }
}

TEST_CASE("events: a snapshot that takes back a running container clears HAProxy whole", "[director][events]") {
  // A snapshot names no username (a re-list after the spawner missed events): what the feed
  // vouched for may be held under a username no agent here remembers.
  Director director(event_settings());
  const Invalidation first = director.feed_snapshot(0, Containers{{"jack", running()}, {"jill", stopped()}}, after(0ms));
  CHECK_FALSE(first.clear_all);  // nothing vouched for before

  const Invalidation jill_started = director.feed_snapshot(0, Containers{{"jack", running()}, {"jill", running()}}, after(1s));
  CHECK_FALSE(jill_started.clear_all);  // jill was not vouched for: nobody holds her as alive on its word
  CHECK(jill_started.haproxy_keys == std::vector<std::string>{"jill"});

  SECTION("gone") {
    CHECK(director.feed_snapshot(0, Containers{{"jill", running()}}, after(2s)).clear_all);
  }
  SECTION("stopped") {
    CHECK(director.feed_snapshot(0, Containers{{"jack", stopped()}, {"jill", running()}}, after(2s)).clear_all);
  }
  SECTION("unhealthy") {
    CHECK(director.feed_snapshot(0, Containers{{"jack", running()}, {"jill", unhealthy()}}, after(2s)).clear_all);
  }
  SECTION("another container") {
    CHECK(director.feed_snapshot(0, Containers{{"jack", running("c2")}, {"jill", running()}}, after(2s)).clear_all);
  }
  SECTION("not the first snapshot after the feed was lost: the loss cleared HAProxy already") {
    CHECK(director.feed_lost(0, after(2s)).clear_all);
    const Invalidation reconnected = director.feed_snapshot(0, Containers{{"jill", stopped()}}, after(3s));
    CHECK_FALSE(reconnected.clear_all);
  }
}

TEST_CASE("events: hold is how long HAProxy may reuse an alive answer", "[director][events]") {
  Director director(event_settings());
  director.feed_snapshot(0, Containers{{"jack", running()}}, after(0ms));

  SECTION("event TTL and an invalidation channel: until the background re-check") {
    director.set_haproxy_invalidation(true);
    const Completion done = check_now(director, "jack", alive_result(), after(0ms));
    CHECK(done.answer.hold == refresh("jack"));
    CHECK(hit(director, "jack", after(10s)).hold == refresh("jack") - 10s);
    CHECK(hit(director, "jack", after(refresh("jack") - 1s)).hold == 1s);
  }
  SECTION("no invalidation channel: fast_path_hold") {
    director.set_haproxy_invalidation(false);
    CHECK(check_now(director, "jack", alive_result(), after(0ms)).answer.hold == 500ms);
    CHECK(hit(director, "jack", after(200ms)).hold == 300ms);
    CHECK(hit(director, "jack", after(600ms)).hold == 0ms);
    CHECK(hit(director, "jack", after(10s)).hold == 0ms);  // still the event TTL, never a long hold
  }
  SECTION("the channel goes away: answers from then on get fast_path_hold") {
    director.set_haproxy_invalidation(true);
    check_now(director, "jack", alive_result(), after(0ms));
    director.set_haproxy_invalidation(false);
    CHECK(hit(director, "jack", after(100ms)).hold == 400ms);
  }
  SECTION("TTL mode: fast_path_hold, whatever the channel") {
    director.set_haproxy_invalidation(true);
    check_now(director, "jill", alive_result(), after(0ms));  // no feed knows jill
    CHECK(hit(director, "jill", after(100ms)).hold == 400ms);
    CHECK(hit(director, "jill", after(700ms)).hold == 0ms);
  }
  SECTION("fast_path_hold 0: HAProxy never reuses outside the event TTL") {
    Settings settings = event_settings();
    settings.fast_path_hold = 0ms;
    Director strict_hold(settings);
    strict_hold.set_haproxy_invalidation(true);
    CHECK(check_now(strict_hold, "jill", alive_result(), after(0ms)).answer.hold == 0ms);
  }
  SECTION("not alive: 0") {
    director.set_haproxy_invalidation(true);
    CHECK(check_now(director, "jack", refused_result(), after(0ms)).answer.hold == 0ms);
    CHECK(hit(director, "jack", after(100ms)).hold == 0ms);
  }
}

TEST_CASE("events: a check that finds a label no longer alive lists its HAProxy keys", "[director][events]") {
  Settings settings = event_settings();
  settings.username_mode = UsernameMode::escape;
  Director director(settings);
  const std::string label = check_now(director, "Jack", alive_result(), after(0ms)).answer.label;

  // alive -> alive, alive -> not alive, not alive -> not alive, not alive -> alive.
  CHECK(check_now(director, "Jack", alive_result(), after(1s)).haproxy_keys.empty());
  const Completion died = check_now(director, "Jack", refused_result(), after(2s));
  CHECK(died.haproxy_keys == std::vector<std::string>{label, "Jack"});
  CHECK(check_now(director, "Jack", refused_result(), after(3s)).haproxy_keys.empty());
  CHECK(check_now(director, "Jack", alive_result(), after(4s)).haproxy_keys.empty());
}

TEST_CASE("events: usernames outside HAProxy's charset are never keys", "[director][events]") {
  Settings settings = event_settings();
  settings.username_mode = UsernameMode::escape;
  Director director(settings);
  for (const std::string& username : {std::string("jack smith"), std::string("jack;clear table x"),
                                     std::string(65, 'J'), std::string("j\xc3\xa4" "ck")}) {
    const std::string label = check_now(director, username, alive_result(), after(0ms)).answer.label;
    const Completion died = check_now(director, username, refused_result(), after(1s));
    CHECK(died.haproxy_keys == std::vector<std::string>{label});
  }
}

TEST_CASE("events: retry forces a fresh check, but not twice within retry_interval", "[director][events]") {
  Director director(event_settings());
  director.feed_snapshot(0, Containers{{"jack", running()}}, after(0ms));
  check_now(director, "jack", alive_result(), after(0ms));

  SECTION("honoured: the request waits for a new check") {
    const auto retried = director.decide("jack", 2, after(10s), /*retry=*/true);
    CHECK_FALSE(retried.answer);
    REQUIRE(retried.start_check);
    CHECK(director.stats().retries == 1);
    const Completion done = director.complete("jack", refused_result(), after(10s + 5ms));
    CHECK(done.waiters == std::vector<WaiterId>{2});
    CHECK(done.haproxy_keys == std::vector<std::string>{"jack"});
  }
  SECTION("within retry_interval of the last check: answered from the cache") {
    const auto retried = director.decide("jack", 2, after(249ms), /*retry=*/true);
    REQUIRE(retried.answer);
    CHECK_FALSE(retried.start_check);
    CHECK(director.stats().retries == 0);
    CHECK_FALSE(director.decide("jack", 3, after(250ms), /*retry=*/true).answer);
  }
  SECTION("a check in flight: the retry queues on it") {
    const auto refresh = director.decide("jack", 2, after(46s));  // background re-check
    REQUIRE(refresh.answer);
    REQUIRE(refresh.start_check);
    const auto retried = director.decide("jack", 3, after(46s + 1ms), /*retry=*/true);
    CHECK_FALSE(retried.answer);
    CHECK_FALSE(retried.start_check);
    CHECK(director.complete("jack", alive_result(), after(46s + 2ms)).waiters == std::vector<WaiterId>{3});
  }
  SECTION("without retry the same request is a hit") {
    CHECK(director.decide("jack", 2, after(10s)).answer);
  }
}

TEST_CASE("events: the LRU bound still holds with feeds and keys", "[director][events]") {
  Settings settings = event_settings();
  settings.capacity = 2;
  Director director(settings);
  director.set_haproxy_invalidation(true);
  director.feed_snapshot(0, Containers{{"ann", running()}, {"bob", running()}, {"cat", running()}}, after(0ms));
  check_now(director, "ann", alive_result(), after(1ms));
  check_now(director, "bob", alive_result(), after(2ms));
  check_now(director, "cat", alive_result(), after(3ms));
  CHECK(director.size() == 2);
  CHECK(director.stats().evictions == 1);
  CHECK_FALSE(director.find_user("ann"));
  CHECK(director.covered_labels() == 3);  // the feed view does not depend on the cache

  // The evicted label: its key is still cleared, no check for it.
  const Invalidation stop = director.feed_event(0, "ann", "", stopped(), after(1s));
  CHECK(stop.haproxy_keys == std::vector<std::string>{"ann"});
  CHECK(stop.checks.empty());
  director.feed_event(0, "ann", "", running(), after(2s));
  // Cached again: covered from its first check.
  check_now(director, "ann", alive_result(), after(3s));
  CHECK(event_covered(director, "ann"));
  CHECK(hit(director, "ann", after(4s)).hold == refresh("ann") - 1s);
}

TEST_CASE("events: a label is covered while any connected feed vouches for it", "[director][events]") {
  Director director(event_settings());
  director.feed_snapshot(0, Containers{{"jack", stopped("old")}}, after(0ms));
  CHECK(director.covered_labels() == 0);
  // An event from a feed that sent no snapshot yet still counts: it comes over a live connection.
  director.feed_event(1, "jack", "", running("new"), after(1ms));
  CHECK(director.covered_labels() == 1);
  check_now(director, "jack", alive_result(), after(2ms));
  CHECK(event_covered(director, "jack"));

  // The other feed's word on the old container changes, the label is still covered: but the
  // entry is invalidated all the same (what changed may be the container it routes to).
  const Invalidation destroyed = director.feed_event(0, "jack", "", std::nullopt, after(1s));
  CHECK(destroyed.checks.size() == 1);
  CHECK(director.covered_labels() == 1);
  director.complete("jack", alive_result(), after(1s + 1ms));
  CHECK(event_covered(director, "jack"));

  director.feed_event(1, "jack", "", unhealthy("new"), after(2s));
  CHECK(director.covered_labels() == 0);
  director.complete("jack", alive_result(), after(2s + 1ms));
  CHECK_FALSE(event_covered(director, "jack"));
}

TEST_CASE("events: an evicted entry's usernames HAProxy may still hold are cleared", "[director][events]") {
  Settings settings = event_settings();
  settings.username_mode = UsernameMode::escape;
  settings.capacity = 1;
  Director director(settings);
  director.set_haproxy_invalidation(true);
  const std::string jack = check_now(director, "Jack", alive_result(), after(0ms)).answer.label;
  director.feed_snapshot(0, Containers{{jack, running()}}, after(0ms));
  check_now(director, "Jack", alive_result(), after(1s));
  REQUIRE(hit(director, "Jack", after(2s)).hold == refresh(jack) - 1s);  // HAProxy holds "Jack" till then

  SECTION("evicted while the hold may be live: the next completion clears it") {
    const auto jill = director.decide("Jill", 2, after(3s));  // evicts Jack's entry
    REQUIRE(jill.start_check);
    CHECK_FALSE(director.find_user(jack));
    const Completion done = director.complete(jill.start_check->label, alive_result(), after(3s));
    CHECK(done.haproxy_keys == std::vector<std::string>{"Jack"});
    // Once.
    CHECK(check_now(director, "Jill", alive_result(), after(4s)).haproxy_keys.empty());
  }
  SECTION("evicted after any hold ran out: nothing to clear") {
    const auto jill = director.decide("Jill", 2, after(2s + 45s));
    REQUIRE(jill.start_check);
    CHECK(director.complete(jill.start_check->label, alive_result(), after(2s + 45s)).haproxy_keys.empty());
  }
}
