#include "metrics/metrics.hpp"

#include <prometheus/text_serializer.h>

#include <algorithm>
#include <utility>

namespace director::metrics {
namespace {

using prometheus::Histogram;

// NOTIFY -> ACK: microseconds for cache hits, up to HAProxy's usual 1 s `timeout processing`
// for requests that wait for a check.
const Histogram::BucketBoundaries decision_buckets = {5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3,
                                                      2.5e-3, 1e-2, 5e-2, 0.1, 0.25, 0.5, 1};
// DNS lookups: ~100 us for a numeric host, milliseconds on the wire, seconds on timeouts.
const Histogram::BucketBoundaries dns_buckets = {1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2,
                                                 5e-2, 0.1, 0.25, 0.5, 1, 2.5};
// Probes: a loopback connect takes ~100 us; the probe timeout is at most 30 s (250 ms default).
const Histogram::BucketBoundaries probe_buckets = {1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2,
                                                   5e-2, 0.1, 0.25, 0.5, 1, 2.5};

double seconds(Duration elapsed) { return std::chrono::duration<double>(elapsed).count(); }

// Index of a Status among the error statuses (normal excluded); unknown for values outside
// the enumeration.
std::size_t error_index(spop::Status status) {
  const auto code = static_cast<std::uint32_t>(status);
  if (code >= 1 && code <= 13) return code - 1;
  return 13;  // Status::unknown (99) and anything unexpected
}

constexpr std::array<std::string_view, 14> error_status_names = {
    "io_error",          "timeout",     "frame_too_big",      "invalid_frame",
    "no_version",        "no_max_frame_size", "no_capabilities", "bad_version",
    "bad_max_frame_size", "fragmentation_not_supported", "interlaced_frames", "frame_id_not_found",
    "resource_allocation", "unknown"};

prometheus::MetricFamily sampled_family(std::string name, std::string help, prometheus::MetricType type,
                                        double value) {
  prometheus::ClientMetric metric;
  if (type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  return prometheus::MetricFamily{std::move(name), std::move(help), type, {std::move(metric)}};
}

prometheus::ClientMetric gauge_with_label(std::string name, std::string value, double sample) {
  prometheus::ClientMetric metric;
  metric.label.push_back({std::move(name), std::move(value)});
  metric.gauge.value = sample;
  return metric;
}

}  // namespace

Metrics::Metrics(std::string_view version, std::chrono::system_clock::time_point started) {
  auto& decisions = prometheus::BuildCounter()
                        .Name("director_decisions_total")
                        .Help("Route requests answered, by outcome and reason (the reason variable sent to HAProxy)")
                        .Register(registry_);
  for (std::size_t i = 0; i < reason_count; ++i) {
    const auto reason = static_cast<decision::Reason>(i);
    decisions_by_reason_[i] = &decisions.Add(
        {{"outcome", reason == decision::Reason::ok ? "alive" : "not_alive"},
         {"reason", std::string(decision::to_string(reason))}});
  }
  decision_duration_ = &prometheus::BuildHistogram()
                            .Name("director_decision_duration_seconds")
                            .Help("Time from a NOTIFY's arrival to its ACK being queued")
                            .Register(registry_)
                            .Add({}, decision_buckets);

  auto& lookups = prometheus::BuildCounter()
                      .Name("director_dns_lookups_total")
                      .Help("DNS lookups of container hosts by checks, by result")
                      .Register(registry_);
  dns_lookups_ = {&lookups.Add({{"result", "ok"}}), &lookups.Add({{"result", "no_such_host"}}),
                  &lookups.Add({{"result", "error"}})};
  dns_lookup_duration_ = &prometheus::BuildHistogram()
                              .Name("director_dns_lookup_duration_seconds")
                              .Help("Duration of the DNS lookups of checks")
                              .Register(registry_)
                              .Add({}, dns_buckets);

  auto& probes = prometheus::BuildCounter()
                     .Name("director_probes_total")
                     .Help("Liveness probes of containers, by result")
                     .Register(registry_);
  probes_ = {&probes.Add({{"result", "ok"}}), &probes.Add({{"result", "refused"}}),
             &probes.Add({{"result", "timeout"}}), &probes.Add({{"result", "failed"}})};
  probe_duration_ = &prometheus::BuildHistogram()
                         .Name("director_probe_duration_seconds")
                         .Help("Duration of the liveness probes, until their outcome")
                         .Register(registry_)
                         .Add({}, probe_buckets);

  checks_in_flight_ = &prometheus::BuildGauge()
                           .Name("director_checks_in_flight")
                           .Help("Checks (DNS lookup, then probe) in progress")
                           .Register(registry_)
                           .Add({});
  lookups_in_flight_ = &prometheus::BuildGauge()
                            .Name("director_dns_lookups_in_flight")
                            .Help("Checks waiting for their DNS lookup")
                            .Register(registry_)
                            .Add({});
  probes_in_flight_ = &prometheus::BuildGauge()
                           .Name("director_probes_in_flight")
                           .Help("Checks past their DNS lookup and not finished: probing the container")
                           .Register(registry_)
                           .Add({});

  auto& received = prometheus::BuildCounter()
                       .Name("director_spop_frames_received_total")
                       .Help("SPOP frames read from HAProxy, by type")
                       .Register(registry_);
  frames_received_ = {&received.Add({{"type", "hello"}}), &received.Add({{"type", "notify"}}),
                      &received.Add({{"type", "disconnect"}}), &received.Add({{"type", "other"}})};
  auto& sent = prometheus::BuildCounter()
                   .Name("director_spop_frames_sent_total")
                   .Help("SPOP frames written to HAProxy, by type")
                   .Register(registry_);
  frames_sent_ = {&sent.Add({{"type", "hello"}}), &sent.Add({{"type", "ack"}}),
                  &sent.Add({{"type", "disconnect"}})};
  auto& errors = prometheus::BuildCounter()
                     .Name("director_spop_protocol_errors_total")
                     .Help("SPOP sessions ended by the agent for a protocol error, by AGENT-DISCONNECT status")
                     .Register(registry_);
  for (std::size_t i = 0; i < error_status_count; ++i) {
    protocol_errors_[i] = &errors.Add({{"status", std::string(error_status_names[i])}});
  }
  acks_without_decision_ =
      &prometheus::BuildCounter()
           .Name("director_spop_acks_without_decision_total")
           .Help("Route requests whose ACK did not fit in the negotiated max-frame-size and went out with a "
                 "placeholder instead of the decision (not in director_decisions_total)")
           .Register(registry_)
           .Add({});

  auto& messages = prometheus::BuildCounter()
                       .Name("director_event_feed_messages_total")
                       .Help("Messages delivered by the spawners' event feeds, by type (heartbeats not counted)")
                       .Register(registry_);
  feed_messages_ = {&messages.Add({{"type", "snapshot"}}), &messages.Add({{"type", "event"}})};
  auto& invalidations = prometheus::BuildCounter()
                            .Name("director_invalidations_total")
                            .Help("Cached answers invalidated before their TTL, by cause")
                            .Register(registry_);
  invalidations_ = {&invalidations.Add({{"cause", "event"}}), &invalidations.Add({{"cause", "feed_lost"}}),
                    &invalidations.Add({{"cause", "retry"}}), &invalidations.Add({{"cause", "not_alive"}})};
  auto& commands = prometheus::BuildCounter()
                       .Name("director_haproxy_runtime_commands_total")
                       .Help("Commands sent to HAProxy runtime API sockets, by result")
                       .Register(registry_);
  haproxy_commands_ = {&commands.Add({{"result", "ok"}}), &commands.Add({{"result", "refused"}}),
                       &commands.Add({{"result", "failed"}})};
  haproxy_keys_cleared_ = &prometheus::BuildCounter()
                               .Name("director_haproxy_keys_cleared_total")
                               .Help("Keys cleared from HAProxy's fast_path tables (one per key and socket)")
                               .Register(registry_)
                               .Add({});
  haproxy_table_clears_ = &prometheus::BuildCounter()
                               .Name("director_haproxy_table_clears_total")
                               .Help("Whole fast_path tables cleared (on start, on a socket reachable again, on a "
                                     "lost feed)")
                               .Register(registry_)
                               .Add({});
  haproxy_keys_refused_ = &prometheus::BuildCounter()
                               .Name("director_haproxy_keys_refused_total")
                               .Help("Keys never sent to HAProxy because they are outside the key charset")
                               .Register(registry_)
                               .Add({});

  prometheus::BuildGauge()
      .Name("director_build_info")
      .Help("Always 1; the version label identifies the running agent")
      .Register(registry_)
      .Add({{"version", std::string(version)}})
      .Set(1);
  prometheus::BuildGauge()
      .Name("director_start_time_seconds")
      .Help("Start time of the agent, in seconds since the Unix epoch")
      .Register(registry_)
      .Add({})
      .Set(std::chrono::duration<double>(started.time_since_epoch()).count());
}

Metrics::~Metrics() = default;

void Metrics::decision_answered(decision::Reason reason, Duration elapsed) {
  const auto index = static_cast<std::size_t>(reason);
  if (index < reason_count) decisions_by_reason_[index]->Increment();
  decision_duration_->Observe(seconds(elapsed));
}

void Metrics::dns_lookup_finished(decision::DnsOutcome outcome, Duration elapsed) {
  lookups_in_flight_->Decrement();
  probes_in_flight_->Increment();
  const auto index = static_cast<std::size_t>(outcome);
  if (index < dns_outcome_count) dns_lookups_[index]->Increment();
  dns_lookup_duration_->Observe(seconds(elapsed));
}

void Metrics::probe_finished(decision::ProbeOutcome outcome, Duration elapsed) {
  const auto index = static_cast<std::size_t>(outcome);
  if (index >= probe_outcome_count) return;  // not_run
  probes_[index]->Increment();
  probe_duration_->Observe(seconds(elapsed));
}

void Metrics::check_started() {
  checks_in_flight_->Increment();
  lookups_in_flight_->Increment();
}

void Metrics::check_finished() {
  checks_in_flight_->Decrement();
  probes_in_flight_->Decrement();
}

void Metrics::frame_received(spop::FrameType type) {
  switch (type) {
    case spop::FrameType::haproxy_hello: frames_received_[0]->Increment(); return;
    case spop::FrameType::notify: frames_received_[1]->Increment(); return;
    case spop::FrameType::haproxy_disconnect: frames_received_[2]->Increment(); return;
    default: frames_received_[3]->Increment(); return;
  }
}

void Metrics::frame_sent(spop::FrameType type) {
  switch (type) {
    case spop::FrameType::agent_hello: frames_sent_[0]->Increment(); return;
    case spop::FrameType::ack: frames_sent_[1]->Increment(); return;
    case spop::FrameType::agent_disconnect: frames_sent_[2]->Increment(); return;
    default: return;
  }
}

void Metrics::protocol_error(spop::Status status) {
  if (status == spop::Status::normal) return;
  protocol_errors_[error_index(status)]->Increment();
}

void Metrics::ack_actions_dropped() { acks_without_decision_->Increment(); }

void Metrics::feed_message(FeedMessage type) {
  const auto index = static_cast<std::size_t>(type);
  if (index < feed_message_count) feed_messages_[index]->Increment();
}

void Metrics::invalidated(InvalidationCause cause, std::uint64_t entries) {
  const auto index = static_cast<std::size_t>(cause);
  if (index < invalidation_cause_count && entries > 0) invalidations_[index]->Increment(static_cast<double>(entries));
}

void Metrics::haproxy_command(HaproxyCommandResult result) {
  const auto index = static_cast<std::size_t>(result);
  if (index < haproxy_result_count) haproxy_commands_[index]->Increment();
}

void Metrics::haproxy_keys_cleared(std::uint64_t keys) { haproxy_keys_cleared_->Increment(static_cast<double>(keys)); }

void Metrics::haproxy_table_cleared() { haproxy_table_clears_->Increment(); }

void Metrics::haproxy_keys_refused(std::uint64_t keys) { haproxy_keys_refused_->Increment(static_cast<double>(keys)); }

std::uint64_t Metrics::decisions() const {
  double total = 0;
  for (const auto* counter : decisions_by_reason_) total += counter->Value();
  return static_cast<std::uint64_t>(total);
}

std::int64_t Metrics::checks_in_flight() const { return static_cast<std::int64_t>(checks_in_flight_->Value()); }

std::vector<prometheus::MetricFamily> Metrics::collect(const StateSample& sample) const {
  using prometheus::MetricType;
  auto families = registry_.Collect();
  const auto& stats = sample.decisions;
  families.push_back(sampled_family("director_cache_hits_total",
                                    "Route requests answered from a fresh cache entry", MetricType::Counter,
                                    static_cast<double>(stats.hits)));
  families.push_back(sampled_family("director_cache_misses_total",
                                    "Route requests that had to wait for a check", MetricType::Counter,
                                    static_cast<double>(stats.misses)));
  families.push_back(sampled_family("director_cache_evictions_total",
                                    "Cache entries dropped by the capacity bound (least recently used first)",
                                    MetricType::Counter, static_cast<double>(stats.evictions)));
  families.push_back(sampled_family("director_stale_dns_answers_total",
                                    "Checks whose DNS lookup failed and that probed the last known address instead, whatever the probe's outcome",
                                    MetricType::Counter, static_cast<double>(stats.stale_dns)));
  families.push_back(sampled_family("director_rechecks_total",
                                    "Checks repeated because a feed change of their label arrived while they ran",
                                    MetricType::Counter, static_cast<double>(stats.rechecks)));
  families.push_back(sampled_family("director_users_cached", "Users in the decision cache", MetricType::Gauge,
                                    static_cast<double>(sample.users_cached)));
  families.push_back(sampled_family("director_spop_connections", "Open SPOP connections from HAProxy",
                                    MetricType::Gauge, static_cast<double>(sample.spop_connections)));
  families.push_back(prometheus::MetricFamily{
      "director_active_users",
      "Cached users whose last request is within the window",
      MetricType::Gauge,
      {gauge_with_label("window", "5m", static_cast<double>(sample.active_users_5m)),
       gauge_with_label("window", "15m", static_cast<double>(sample.active_users_15m))}});

  const bool event_mode =
      sample.event_feeds_configured > 0 && sample.event_feeds_connected == sample.event_feeds_configured;
  families.push_back(sampled_family("director_liveness_mode",
                                    "1 when every configured event feed is connected (event mode), 0 otherwise (TTL "
                                    "mode: no feed configured, or one is disconnected)",
                                    MetricType::Gauge, event_mode ? 1 : 0));
  families.push_back(sampled_family("director_event_feeds_configured", "Event feeds configured (DIRECTOR_EVENT_FEEDS)",
                                    MetricType::Gauge, static_cast<double>(sample.event_feeds_configured)));
  families.push_back(sampled_family("director_event_feeds_connected",
                                    "Event feeds connected now (a snapshot received, heartbeats on time)",
                                    MetricType::Gauge, static_cast<double>(sample.event_feeds_connected)));
  families.push_back(sampled_family("director_event_feed_reconnects_total",
                                    "Connection attempts of the event feeds after the first, all feeds",
                                    MetricType::Counter, static_cast<double>(sample.event_feed_reconnects)));
  families.push_back(sampled_family("director_covered_users",
                                    "Labels a connected event feed reports running and not unhealthy",
                                    MetricType::Gauge, static_cast<double>(sample.covered_users)));
  const bool all_reachable =
      sample.haproxy_sockets_configured > 0 && sample.haproxy_sockets_reachable == sample.haproxy_sockets_configured;
  families.push_back(sampled_family("director_haproxy_runtime_reachable",
                                    "1 when every configured HAProxy runtime API socket is reachable (HAProxy may "
                                    "hold event-covered answers long), 0 otherwise or when none is configured",
                                    MetricType::Gauge, all_reachable ? 1 : 0));
  families.push_back(prometheus::MetricFamily{
      "director_haproxy_runtime_sockets",
      "HAProxy runtime API sockets configured (DIRECTOR_HAPROXY_SOCKETS), by state",
      MetricType::Gauge,
      {gauge_with_label("state", "reachable", static_cast<double>(sample.haproxy_sockets_reachable)),
       gauge_with_label("state", "unreachable",
                        static_cast<double>(sample.haproxy_sockets_configured -
                                            std::min(sample.haproxy_sockets_reachable, sample.haproxy_sockets_configured)))}});
  return families;
}

std::string Metrics::serialize(const StateSample& sample) const {
  return prometheus::TextSerializer{}.Serialize(collect(sample));
}

}  // namespace director::metrics
