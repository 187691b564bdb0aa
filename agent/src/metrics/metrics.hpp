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

// State sampled when Prometheus scrapes, instead of being counted by events: the decision core
// already keeps these numbers, and mirroring them would count twice.
struct StateSample {
  decision::Stats decisions;          // the core's monotonic counters (hits, misses, ...)
  std::size_t users_cached = 0;       // entries in the decision cache
  std::size_t active_users_5m = 0;    // cached users whose last request is at most 5 min old
  std::size_t active_users_15m = 0;   // ... at most 15 min old
  std::size_t spop_connections = 0;   // open SPOP connections from HAProxy
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
};

}  // namespace director::metrics
