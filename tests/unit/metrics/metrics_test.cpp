// Metrics tests: each event moves exactly its series, sampled state is reported as given, and
// the set of series (and of label values) is fixed whatever the traffic.
#include "metrics/metrics.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <map>
#include <set>
#include <sstream>
#include <string>

using director::decision::DnsOutcome;
using director::decision::ProbeOutcome;
using director::decision::Reason;
using director::metrics::Duration;
using director::metrics::Metrics;
using director::metrics::StateSample;
using director::spop::FrameType;
using director::spop::Status;
using namespace std::chrono_literals;

namespace {

// Series name with labels (as printed) -> value, from the text exposition format.
using Samples = std::map<std::string, double>;

Samples parse_text(const std::string& text) {
  Samples samples;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line.front() == '#') continue;
    const auto space = line.rfind(' ');
    REQUIRE(space != std::string::npos);
    const auto [_, inserted] = samples.emplace(line.substr(0, space), std::stod(line.substr(space + 1)));
    REQUIRE(inserted);  // every series appears once
  }
  return samples;
}

// The series whose value changed from `before` to `after`, with the change. Both must hold the
// same series.
Samples changes(const Samples& before, const Samples& after) {
  REQUIRE(before.size() == after.size());
  Samples moved;
  for (const auto& [series, value] : after) {
    const auto old = before.find(series);
    REQUIRE(old != before.end());
    if (old->second != value) moved.emplace(series, value - old->second);
  }
  return moved;
}

// Drops the _bucket and _sum series of histograms (checked separately): what remains of an
// observation is its _count.
Samples without_histogram_detail(Samples samples) {
  std::erase_if(samples, [](const auto& entry) {
    return entry.first.find("_bucket{") != std::string::npos || entry.first.ends_with("_sum");
  });
  return samples;
}

struct Fixture {
  Metrics metrics{"1.2.3", std::chrono::system_clock::time_point(std::chrono::seconds(1'700'000'000))};
  StateSample sample;

  Samples scrape() const { return parse_text(metrics.serialize(sample)); }

  // Runs `event` and returns what moved (histogram detail left out).
  template <typename Event>
  Samples moved_by(Event&& event) {
    const auto before = scrape();
    event();
    return without_histogram_detail(changes(before, scrape()));
  }
};

}  // namespace

TEST_CASE("a decision moves its outcome and reason series and the latency histogram", "[metrics]") {
  Fixture f;
  CHECK(f.moved_by([&] { f.metrics.decision_answered(Reason::ok, 3us); }) ==
        Samples{{R"(director_decisions_total{outcome="alive",reason="ok"})", 1},
                {"director_decision_duration_seconds_count", 1}});
  const std::map<Reason, std::string> not_alive = {
      {Reason::missing_username, "missing-username"}, {Reason::invalid_username, "invalid-username"},
      {Reason::no_such_host, "no-such-host"},         {Reason::dns_error, "dns-error"},
      {Reason::refused, "refused"},                   {Reason::timeout, "timeout"},
      {Reason::probe_failed, "probe-failed"}};
  for (const auto& [reason, token] : not_alive) {
    CAPTURE(token);
    CHECK(f.moved_by([&] { f.metrics.decision_answered(reason, 1ms); }) ==
          Samples{{R"(director_decisions_total{outcome="not_alive",reason=")" + token + R"("})", 1},
                  {"director_decision_duration_seconds_count", 1}});
  }
  CHECK(f.metrics.decisions() == 8);
}

TEST_CASE("histogram buckets: a microsecond cache hit and a slow check land where expected", "[metrics]") {
  Fixture f;
  f.metrics.decision_answered(Reason::ok, 3us);
  f.metrics.decision_answered(Reason::dns_error, 300ms);
  const auto samples = f.scrape();
  CHECK(samples.at(R"(director_decision_duration_seconds_bucket{le="5e-06"})") == 1);
  CHECK(samples.at(R"(director_decision_duration_seconds_bucket{le="0.25"})") == 1);
  CHECK(samples.at(R"(director_decision_duration_seconds_bucket{le="0.5"})") == 2);
  CHECK(samples.at(R"(director_decision_duration_seconds_bucket{le="+Inf"})") == 2);
  CHECK(samples.at("director_decision_duration_seconds_sum") == Approx(0.300003));
}

TEST_CASE("DNS lookups and probes count by result, a probe that did not run is not counted", "[metrics]") {
  Fixture f;
  // Each lookup belongs to a check: it ends the check's lookup and starts its probe.
  const Samples in_flight_moves = {{"director_dns_lookups_in_flight", -1}, {"director_probes_in_flight", 1}};
  const auto with_in_flight = [&](Samples samples) {
    samples.insert(in_flight_moves.begin(), in_flight_moves.end());
    return samples;
  };
  const std::map<DnsOutcome, std::pair<std::string, Duration>> lookups = {
      {DnsOutcome::ok, {"ok", 2ms}}, {DnsOutcome::no_such_host, {"no_such_host", 2ms}},
      {DnsOutcome::error, {"error", 750ms}}};
  for (const auto& [outcome, token_and_time] : lookups) {
    const auto& [token, elapsed] = token_and_time;
    CAPTURE(token);
    f.metrics.check_started();
    CHECK(f.moved_by([&] { f.metrics.dns_lookup_finished(outcome, elapsed); }) ==
          with_in_flight({{R"(director_dns_lookups_total{result=")" + token + R"("})", 1},
                          {"director_dns_lookup_duration_seconds_count", 1}}));
    f.metrics.check_finished();
  }

  const std::map<ProbeOutcome, std::string> probes = {{ProbeOutcome::ok, "ok"},
                                                      {ProbeOutcome::refused, "refused"},
                                                      {ProbeOutcome::timeout, "timeout"},
                                                      {ProbeOutcome::failed, "failed"}};
  for (const auto& [outcome, token] : probes) {
    CAPTURE(token);
    CHECK(f.moved_by([&] { f.metrics.probe_finished(outcome, 1ms); }) ==
          Samples{{R"(director_probes_total{result=")" + token + R"("})", 1},
                  {"director_probe_duration_seconds_count", 1}});
  }
  CHECK(f.moved_by([&] { f.metrics.probe_finished(ProbeOutcome::not_run, 0ms); }).empty());
}

TEST_CASE("checks in flight go up and down, in their lookup, then in their probe", "[metrics]") {
  Fixture f;
  const auto in_flight = [&] {
    const auto samples = f.scrape();
    return std::array<double, 3>{samples.at("director_checks_in_flight"), samples.at("director_dns_lookups_in_flight"),
                                 samples.at("director_probes_in_flight")};
  };
  CHECK(in_flight() == std::array<double, 3>{0, 0, 0});
  f.metrics.check_started();
  f.metrics.check_started();
  CHECK(in_flight() == std::array<double, 3>{2, 2, 0});
  CHECK(f.metrics.checks_in_flight() == 2);
  f.metrics.dns_lookup_finished(DnsOutcome::ok, 1ms);  // the first check probes
  CHECK(in_flight() == std::array<double, 3>{2, 1, 1});
  f.metrics.probe_finished(ProbeOutcome::ok, 1ms);
  f.metrics.check_finished();
  CHECK(in_flight() == std::array<double, 3>{1, 1, 0});
  CHECK(f.metrics.checks_in_flight() == 1);
  f.metrics.dns_lookup_finished(DnsOutcome::no_such_host, 1ms);  // nothing to probe: done at once
  f.metrics.check_finished();
  CHECK(in_flight() == std::array<double, 3>{0, 0, 0});
  CHECK(f.metrics.checks_in_flight() == 0);
}

TEST_CASE("SPOP frames count by type, unknown received types are other", "[metrics]") {
  Fixture f;
  const std::map<FrameType, std::string> received = {{FrameType::haproxy_hello, "hello"},
                                                     {FrameType::notify, "notify"},
                                                     {FrameType::haproxy_disconnect, "disconnect"},
                                                     {FrameType::fragment, "other"},
                                                     {FrameType::ack, "other"},
                                                     {static_cast<FrameType>(42), "other"}};
  for (const auto& [type, token] : received) {
    CAPTURE(token);
    CHECK(f.moved_by([&] { f.metrics.frame_received(type); }) ==
          Samples{{R"(director_spop_frames_received_total{type=")" + token + R"("})", 1}});
  }
  const std::map<FrameType, std::string> sent = {
      {FrameType::agent_hello, "hello"}, {FrameType::ack, "ack"}, {FrameType::agent_disconnect, "disconnect"}};
  for (const auto& [type, token] : sent) {
    CAPTURE(token);
    CHECK(f.moved_by([&] { f.metrics.frame_sent(type); }) ==
          Samples{{R"(director_spop_frames_sent_total{type=")" + token + R"("})", 1}});
  }
  CHECK(f.moved_by([&] { f.metrics.frame_sent(FrameType::notify); }).empty());
}

TEST_CASE("protocol errors count by status name, normal is not an error", "[metrics]") {
  Fixture f;
  const std::map<Status, std::string> errors = {{Status::frame_too_big, "frame_too_big"},
                                                {Status::invalid_frame, "invalid_frame"},
                                                {Status::no_version, "no_version"},
                                                {Status::no_max_frame_size, "no_max_frame_size"},
                                                {Status::no_capabilities, "no_capabilities"},
                                                {Status::bad_version, "bad_version"},
                                                {Status::bad_max_frame_size, "bad_max_frame_size"},
                                                {Status::fragmentation_not_supported, "fragmentation_not_supported"},
                                                {Status::resource_allocation, "resource_allocation"},
                                                {Status::unknown, "unknown"},
                                                {static_cast<Status>(77), "unknown"}};
  for (const auto& [status, token] : errors) {
    CAPTURE(token);
    CHECK(f.moved_by([&] { f.metrics.protocol_error(status); }) ==
          Samples{{R"(director_spop_protocol_errors_total{status=")" + token + R"("})", 1}});
  }
  CHECK(f.moved_by([&] { f.metrics.protocol_error(Status::normal); }).empty());
}

TEST_CASE("an ACK sent without its decision is counted as such, not as a decision", "[metrics]") {
  Fixture f;
  CHECK(f.moved_by([&] { f.metrics.ack_actions_dropped(); }) ==
        Samples{{"director_spop_acks_without_decision_total", 1}});
  CHECK(f.metrics.decisions() == 0);
}

TEST_CASE("feed messages, invalidations and HAProxy runtime commands count by their fixed labels", "[metrics]") {
  using director::metrics::FeedMessage;
  using director::metrics::HaproxyCommandResult;
  using director::metrics::InvalidationCause;
  Fixture f;
  CHECK(f.moved_by([&] { f.metrics.feed_message(FeedMessage::snapshot); }) ==
        Samples{{R"(director_event_feed_messages_total{type="snapshot"})", 1}});
  CHECK(f.moved_by([&] { f.metrics.feed_message(FeedMessage::event); }) ==
        Samples{{R"(director_event_feed_messages_total{type="event"})", 1}});
  CHECK(f.moved_by([&] { f.metrics.invalidated(InvalidationCause::event, 3); }) ==
        Samples{{R"(director_invalidations_total{cause="event"})", 3}});
  CHECK(f.moved_by([&] { f.metrics.invalidated(InvalidationCause::feed_lost, 2); }) ==
        Samples{{R"(director_invalidations_total{cause="feed_lost"})", 2}});
  CHECK(f.moved_by([&] { f.metrics.invalidated(InvalidationCause::retry, 1); }) ==
        Samples{{R"(director_invalidations_total{cause="retry"})", 1}});
  CHECK(f.moved_by([&] { f.metrics.invalidated(InvalidationCause::not_alive, 1); }) ==
        Samples{{R"(director_invalidations_total{cause="not_alive"})", 1}});
  CHECK(f.moved_by([&] { f.metrics.invalidated(InvalidationCause::event, 0); }).empty());
  CHECK(f.moved_by([&] { f.metrics.haproxy_command(HaproxyCommandResult::ok); }) ==
        Samples{{R"(director_haproxy_runtime_commands_total{result="ok"})", 1}});
  CHECK(f.moved_by([&] { f.metrics.haproxy_command(HaproxyCommandResult::refused); }) ==
        Samples{{R"(director_haproxy_runtime_commands_total{result="refused"})", 1}});
  CHECK(f.moved_by([&] { f.metrics.haproxy_command(HaproxyCommandResult::failed); }) ==
        Samples{{R"(director_haproxy_runtime_commands_total{result="failed"})", 1}});
  CHECK(f.moved_by([&] { f.metrics.haproxy_keys_cleared(250); }) ==
        Samples{{"director_haproxy_keys_cleared_total", 250}});
  CHECK(f.moved_by([&] { f.metrics.haproxy_table_cleared(); }) == Samples{{"director_haproxy_table_clears_total", 1}});
  CHECK(f.moved_by([&] { f.metrics.haproxy_keys_refused(2); }) == Samples{{"director_haproxy_keys_refused_total", 2}});
}

TEST_CASE("the liveness mode is events only while every configured feed is connected", "[metrics]") {
  Fixture f;
  CHECK(f.scrape().at("director_liveness_mode") == 0);  // no feed configured: TTL mode
  f.sample.event_feeds_configured = 2;
  f.sample.event_feeds_connected = 1;
  CHECK(f.scrape().at("director_liveness_mode") == 0);
  f.sample.event_feeds_connected = 2;
  f.sample.event_feed_reconnects = 5;
  f.sample.covered_users = 700;
  const auto samples = f.scrape();
  CHECK(samples.at("director_liveness_mode") == 1);
  CHECK(samples.at("director_event_feeds_configured") == 2);
  CHECK(samples.at("director_event_feeds_connected") == 2);
  CHECK(samples.at("director_event_feed_reconnects_total") == 5);
  CHECK(samples.at("director_covered_users") == 700);
}

TEST_CASE("HAProxy's runtime API counts as reachable only when every configured socket is", "[metrics]") {
  Fixture f;
  CHECK(f.scrape().at("director_haproxy_runtime_reachable") == 0);  // none configured
  f.sample.haproxy_sockets_configured = 3;
  f.sample.haproxy_sockets_reachable = 2;
  auto samples = f.scrape();
  CHECK(samples.at("director_haproxy_runtime_reachable") == 0);
  CHECK(samples.at(R"(director_haproxy_runtime_sockets{state="reachable"})") == 2);
  CHECK(samples.at(R"(director_haproxy_runtime_sockets{state="unreachable"})") == 1);
  f.sample.haproxy_sockets_reachable = 3;
  samples = f.scrape();
  CHECK(samples.at("director_haproxy_runtime_reachable") == 1);
  CHECK(samples.at(R"(director_haproxy_runtime_sockets{state="unreachable"})") == 0);
}

TEST_CASE("sampled state is reported as given, counters from the decision core as is", "[metrics]") {
  Fixture f;
  f.sample.decisions.hits = 40;
  f.sample.decisions.misses = 7;
  f.sample.decisions.evictions = 3;
  f.sample.decisions.stale_dns = 2;
  f.sample.decisions.rechecks = 6;
  f.sample.users_cached = 11;
  f.sample.active_users_5m = 4;
  f.sample.active_users_15m = 9;
  f.sample.spop_connections = 5;
  const auto samples = f.scrape();
  CHECK(samples.at("director_cache_hits_total") == 40);
  CHECK(samples.at("director_cache_misses_total") == 7);
  CHECK(samples.at("director_cache_evictions_total") == 3);
  CHECK(samples.at("director_stale_dns_answers_total") == 2);
  CHECK(samples.at("director_rechecks_total") == 6);
  CHECK(samples.at("director_users_cached") == 11);
  CHECK(samples.at(R"(director_active_users{window="5m"})") == 4);
  CHECK(samples.at(R"(director_active_users{window="15m"})") == 9);
  CHECK(samples.at("director_spop_connections") == 5);
  CHECK(samples.at(R"(director_build_info{version="1.2.3"})") == 1);
  CHECK(samples.at("director_start_time_seconds") == 1'700'000'000);
}

TEST_CASE("every family has HELP and TYPE, counters end in _total, all names share the prefix", "[metrics]") {
  Fixture f;
  const auto families = f.metrics.collect(f.sample);
  std::set<std::string> names;
  for (const auto& family : families) {
    CAPTURE(family.name);
    CHECK(family.name.starts_with("director_"));
    CHECK_FALSE(family.help.empty());
    CHECK_FALSE(family.metric.empty());
    CHECK(names.insert(family.name).second);
    CHECK((family.type == prometheus::MetricType::Counter) == family.name.ends_with("_total"));
  }
  CHECK(names.size() == 36);
}

TEST_CASE("cardinality: the series and their label values never depend on traffic", "[metrics][cardinality]") {
  Fixture f;
  const auto before = f.scrape();
  // 1000 distinct users' worth of traffic: every kind of event, many times. No event takes a
  // user's name, label, host or address, so nothing can become a label.
  for (int user = 0; user < 1000; ++user) {
    f.metrics.decision_answered(static_cast<Reason>(user % 8), std::chrono::microseconds(user));
    f.metrics.check_started();
    f.metrics.dns_lookup_finished(static_cast<DnsOutcome>(user % 3), std::chrono::milliseconds(user % 50));
    f.metrics.probe_finished(static_cast<ProbeOutcome>(user % 5), std::chrono::milliseconds(user % 300));
    f.metrics.check_finished();
    f.metrics.frame_received(static_cast<FrameType>(user % 256));
    f.metrics.frame_sent(static_cast<FrameType>(user % 256));
    f.metrics.protocol_error(static_cast<Status>(user % 100));
    f.metrics.ack_actions_dropped();
    f.metrics.feed_message(static_cast<director::metrics::FeedMessage>(user % 2));
    f.metrics.invalidated(static_cast<director::metrics::InvalidationCause>(user % 4), 1);
    f.metrics.haproxy_command(static_cast<director::metrics::HaproxyCommandResult>(user % 3));
    f.metrics.haproxy_keys_cleared(5);
  }
  f.sample.users_cached = 1000;
  f.sample.active_users_5m = 1000;
  const auto after = f.scrape();
  REQUIRE(after.size() == before.size());
  for (const auto& [series, value] : before) CHECK(after.count(series) == 1);

  // Label values all come from fixed sets.
  const std::map<std::string, std::set<std::string>> allowed = {
      {"outcome", {"alive", "not_alive"}},
      {"reason",
       {"ok", "missing-username", "invalid-username", "no-such-host", "dns-error", "refused", "timeout",
        "probe-failed"}},
      {"result", {"ok", "no_such_host", "error", "refused", "timeout", "failed"}},
      {"type", {"hello", "notify", "disconnect", "other", "ack", "snapshot", "event"}},
      {"cause", {"event", "feed_lost", "retry", "not_alive"}},
      {"state", {"reachable", "unreachable"}},
      {"status",
       {"io_error", "timeout", "frame_too_big", "invalid_frame", "no_version", "no_max_frame_size", "no_capabilities",
        "bad_version", "bad_max_frame_size", "fragmentation_not_supported", "interlaced_frames",
        "frame_id_not_found", "resource_allocation", "unknown"}},
      {"window", {"5m", "15m"}},
      {"version", {"1.2.3"}},
  };
  for (const auto& family : f.metrics.collect(f.sample)) {
    for (const auto& metric : family.metric) {
      for (const auto& label : metric.label) {
        CAPTURE(family.name, label.name, label.value);
        REQUIRE(allowed.count(label.name) == 1);
        CHECK(allowed.at(label.name).count(label.value) == 1);
      }
    }
  }
}
