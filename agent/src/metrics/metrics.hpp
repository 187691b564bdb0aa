// The agent's Prometheus metrics, no I/O: one method per event, called by the server layer, and
// serialize() for the /metrics endpoint (docs/metrics.md describes every series).
//
// Cardinality contract: no label ever carries a username, label, host or address. Every label
// value comes from a small fixed set (the enums of the decision and SPOP layers), and every
// series exists from construction on, so the number of series never depends on traffic.
//
// Cost contract: every labelled child is resolved at construction. An event is an atomic add on
// a pre-resolved series (a histogram observation also takes that histogram's uncontended
// mutex): no map lookup, no string building, no allocation.
//
// Thread-safe: any method may be called from any thread, concurrently with serialize().
#pragma once

#include "decision/director.hpp"
#include "spop/types.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace director::metrics {

using Duration = std::chrono::steady_clock::duration;

// A line of an event feed, by what it told (agent/src/server/event_feed.hpp).
enum class FeedMessage : std::uint8_t {
  snapshot,  // the whole list of a spawner's containers (on connect, and on a feed's re-list)
  event,     // one container's change (created, started, stopped, died, health, destroyed)
};

// Why the decision core invalidated cached answers (docs/architecture.md, "Decision rules").
enum class InvalidationCause : std::uint8_t {
  event,      // a feed reported a change of the container (stopped, died, unhealthy, started, ...)
  feed_lost,  // a feed that covered the container disconnected or fell silent
  retry,      // HAProxy reported a failed connection to the container (retry): a fresh check
  not_alive,  // a check found a container that was alive not alive any more (HAProxy keys cleared)
};

// The outcome of one command sent to an HAProxy runtime API socket.
enum class HaproxyCommandResult : std::uint8_t {
  ok,       // HAProxy answered without an error
  refused,  // HAProxy answered with an error (e.g. no such table)
  failed,   // no answer: connection refused, timeout, read error
};

// State sampled when Prometheus scrapes, instead of being counted by events: the decision core
// already keeps these numbers, and mirroring them would count twice.
struct StateSample {
  decision::Stats decisions;          // the core's monotonic counters (hits, misses, ...)
  std::size_t users_cached = 0;       // entries in the decision cache
  std::size_t active_users_5m = 0;    // cached users whose last request is at most 5 min old
  std::size_t active_users_15m = 0;   // ... at most 15 min old
  std::size_t spop_connections = 0;   // open SPOP connections from HAProxy
  // Event mode: feeds configured (DIRECTOR_EVENT_FEEDS) and connected now, their reconnects
  // since the start, and the labels the connected feeds cover (running and not unhealthy).
  std::size_t event_feeds_configured = 0;
  std::size_t event_feeds_connected = 0;
  std::uint64_t event_feed_reconnects = 0;
  std::size_t covered_users = 0;
  // HAProxy runtime API sockets (DIRECTOR_HAPROXY_SOCKETS) configured and reachable now.
  std::size_t haproxy_sockets_configured = 0;
  std::size_t haproxy_sockets_reachable = 0;
};

class Metrics {
 public:
  // `version` is reported by director_build_info, `started` by director_start_time_seconds.
  // Throws only if prometheus-cpp rejects a family (a programming error, seen at startup).
  Metrics(std::string_view version, std::chrono::system_clock::time_point started);
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;
  Metrics(Metrics&&) = delete;
  Metrics& operator=(Metrics&&) = delete;
  ~Metrics();

  // --- events -------------------------------------------------------------------------------

  // A route request was answered: `elapsed` runs from the NOTIFY's arrival to its ACK being
  // queued. The outcome label is alive for Reason::ok and not_alive otherwise (the decision
  // core answers alive exactly when the reason is ok).
  void decision_answered(decision::Reason reason, Duration elapsed);

  // A check's DNS lookup finished (every check asks DNS: the resolver caches nothing), after
  // that check's check_started().
  void dns_lookup_finished(decision::DnsOutcome outcome, Duration elapsed);
  // A check's liveness probe finished. ProbeOutcome::not_run is not a probe and is ignored.
  void probe_finished(decision::ProbeOutcome outcome, Duration elapsed);
  // A check (lookup, then probe) started / finished: director_checks_in_flight. A check is in
  // its lookup from check_started() to dns_lookup_finished() (director_dns_lookups_in_flight),
  // then in its probe until check_finished() (director_probes_in_flight; a check that got no
  // address to probe finishes at once).
  void check_started();
  void check_finished();

  // A whole frame was read from HAProxy: HAPROXY-HELLO, NOTIFY, HAPROXY-DISCONNECT, anything
  // else (any byte value) counts as type "other".
  void frame_received(spop::FrameType type);
  // A whole frame is being written to HAProxy (counted when handed to the socket, so that it is
  // visible before HAProxy can act on it): AGENT-HELLO, ACK or AGENT-DISCONNECT; other types
  // are never written by the agent and are ignored.
  void frame_sent(spop::FrameType type);
  // A session ended with AGENT-DISCONNECT for a protocol error. Status::normal is not an error
  // and is ignored.
  void protocol_error(spop::Status status);
  // A route request's ACK did not fit in the negotiated max-frame-size: it went out with the
  // placeholder instead of the decision (spop::EncodedAck::actions_dropped), and is not counted
  // by decision_answered.
  void ack_actions_dropped();

  // A feed delivered a message (heartbeats are not delivered: they only keep a feed alive).
  void feed_message(FeedMessage type);
  // `entries` cached answers were invalidated for `cause` (0 is allowed and counts nothing).
  void invalidated(InvalidationCause cause, std::uint64_t entries);
  // A command went to an HAProxy runtime API socket.
  void haproxy_command(HaproxyCommandResult result);
  // Keys of HAProxy's fast_path table cleared (one per key per socket), and whole-table clears.
  void haproxy_keys_cleared(std::uint64_t keys);
  void haproxy_table_cleared();
  // Keys refused before they reached HAProxy (outside the key charset: never sent to a CLI).
  void haproxy_keys_refused(std::uint64_t keys);

  // --- reading --------------------------------------------------------------------------------

  // Route requests answered so far, all outcomes (the sum of director_decisions_total).
  std::uint64_t decisions() const;
  // Checks in progress (director_checks_in_flight).
  std::int64_t checks_in_flight() const;

  // Every family, the event-counted ones and those built from `sample`.
  std::vector<prometheus::MetricFamily> collect(const StateSample& sample) const;
  // collect() in the Prometheus text exposition format, version 0.0.4.
  std::string serialize(const StateSample& sample) const;

 private:
  static constexpr std::size_t reason_count = 8;      // decision::Reason
  static constexpr std::size_t dns_outcome_count = 3;  // decision::DnsOutcome
  static constexpr std::size_t probe_outcome_count = 4;  // decision::ProbeOutcome without not_run
  static constexpr std::size_t received_type_count = 4;  // hello, notify, disconnect, other
  static constexpr std::size_t sent_type_count = 3;      // hello, ack, disconnect
  static constexpr std::size_t error_status_count = 14;  // spop::Status without normal
  static constexpr std::size_t feed_message_count = 2;   // FeedMessage
  static constexpr std::size_t invalidation_cause_count = 4;  // InvalidationCause
  static constexpr std::size_t haproxy_result_count = 3;      // HaproxyCommandResult

  prometheus::Registry registry_;
  std::array<prometheus::Counter*, reason_count> decisions_by_reason_{};
  prometheus::Histogram* decision_duration_ = nullptr;
  std::array<prometheus::Counter*, dns_outcome_count> dns_lookups_{};
  prometheus::Histogram* dns_lookup_duration_ = nullptr;
  std::array<prometheus::Counter*, probe_outcome_count> probes_{};
  prometheus::Histogram* probe_duration_ = nullptr;
  prometheus::Gauge* checks_in_flight_ = nullptr;
  prometheus::Gauge* lookups_in_flight_ = nullptr;
  prometheus::Gauge* probes_in_flight_ = nullptr;
  std::array<prometheus::Counter*, received_type_count> frames_received_{};
  std::array<prometheus::Counter*, sent_type_count> frames_sent_{};
  std::array<prometheus::Counter*, error_status_count> protocol_errors_{};
  prometheus::Counter* acks_without_decision_ = nullptr;
  std::array<prometheus::Counter*, feed_message_count> feed_messages_{};
  std::array<prometheus::Counter*, invalidation_cause_count> invalidations_{};
  std::array<prometheus::Counter*, haproxy_result_count> haproxy_commands_{};
  prometheus::Counter* haproxy_keys_cleared_ = nullptr;
  prometheus::Counter* haproxy_table_clears_ = nullptr;
  prometheus::Counter* haproxy_keys_refused_ = nullptr;
};

}  // namespace director::metrics
