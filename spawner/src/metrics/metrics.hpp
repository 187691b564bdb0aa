// The spawner's Prometheus metrics, no I/O: one method per event, called by the server layer,
// and serialize() for GET /metrics (docs/metrics.md describes every series).
//
// Cardinality contract (the agent's): no label ever carries a username, label, container name or
// id. Every label value comes from a small fixed set (the core's enums and the fixed lists
// below), and every series exists from construction on.
//
// Thread-safe: any method may be called from any thread, concurrently with serialize().
#pragma once

#include "core/container.hpp"
#include "core/idle.hpp"
#include "core/lifecycle.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace director::spawner::metrics {

using Duration = std::chrono::steady_clock::duration;

// The runtime API calls, as the `call` label names them (runtime::Runtime's methods).
enum class RuntimeCall : std::uint8_t {
  ping, inspect, image_has_health_check, pull, create, start, stop, remove, logs, list_managed, watch,
};
std::string_view to_string(RuntimeCall call) noexcept;

// Why a request was refused a wake (director_spawner_wake_refused_total{kind}).
enum class RefusalKind : std::uint8_t {
  xhr,               // fetch() or XMLHttpRequest (Sec-Fetch-Mode cors/same-origin, X-Requested-With)
  websocket,         // an Upgrade request
  asset,             // a script, style, image, font, favicon... (Sec-Fetch-Dest or the path)
  not_navigation,    // anything else that is not a page load (monitors, curl)
  missing_identity,  // without the director's headers, or with a container host not ours
  no_label,          // the director could not give the user a label (agent down, name not a label)
};
std::string_view to_string(RefusalKind kind) noexcept;

// The pages the spawner serves (director_spawner_pages_total{page}).
enum class PageName : std::uint8_t {
  loading, failed, unreachable, refused, forbidden, no_label, status,
};
std::string_view to_string(PageName page) noexcept;

// What an idle round could not read (director_spawner_idle_unreadable_total{source}): each makes
// that round retire nobody.
enum class IdleSource : std::uint8_t {
  runtime,  // the managed containers' listing
  dns,      // a name of SPAWNER_AGENTS: no answer, or no address
  agent,    // one agent's GET /users or GET /connections (unreachable, refused, unparsable)
  haproxy,  // one agent's HAProxy: its GET /connections answered 503 (a socket it could not read)
};
std::string_view to_string(IdleSource source) noexcept;

// State sampled when Prometheus scrapes: the lifecycle already counts these.
struct StateSample {
  std::map<core::Phase, std::size_t> users_by_phase;
  std::map<core::ContainerState, std::size_t> containers_by_state;
  std::size_t feed_subscribers = 0;
};

class Metrics {
 public:
  explicit Metrics(std::string_view version);
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;
  ~Metrics();

  // An operation ended: ready (failure nullopt; `elapsed` from its wake to ready) or failed.
  void spawn_finished(std::optional<core::FailureKind> failure, Duration elapsed);
  void retired(core::IdleAction action);
  void idle_source_unreadable(IdleSource source);
  // A runtime call ended; `error` nullopt: it succeeded.
  void runtime_call(RuntimeCall call, std::optional<core::CallError> error, Duration elapsed);
  void event_stream_reconnected();
  // How many users' Pods the Kubernetes runtime knows stuck Terminating now
  // (KubernetesRuntimeSettings::on_stuck_pods).
  void kubernetes_pods_stuck(std::size_t count);
  void wake_refused(RefusalKind kind);
  void page_served(PageName page);

  std::uint64_t event_stream_reconnects() const;

  std::vector<prometheus::MetricFamily> collect(const StateSample& sample) const;
  // collect() in the Prometheus text exposition format, version 0.0.4.
  std::string serialize(const StateSample& sample) const;

 private:
  static constexpr std::size_t failure_kind_count = 7;  // core::FailureKind
  static constexpr std::size_t call_count = 11;         // RuntimeCall
  static constexpr std::size_t call_error_count = 5;    // core::CallError
  static constexpr std::size_t refusal_count = 6;       // RefusalKind
  static constexpr std::size_t page_count = 7;          // PageName
  static constexpr std::size_t idle_source_count = 4;   // IdleSource

  prometheus::Registry registry_;
  prometheus::Counter* spawns_ready_ = nullptr;
  std::array<prometheus::Counter*, failure_kind_count> spawns_failed_{};
  prometheus::Histogram* time_to_ready_ = nullptr;
  std::array<prometheus::Counter*, 2> retirements_{};  // core::IdleAction
  std::array<prometheus::Counter*, idle_source_count> idle_unreadable_{};
  // [call][0] ok, [call][1 + CallError] failures
  std::array<std::array<prometheus::Counter*, 1 + call_error_count>, call_count> runtime_requests_{};
  std::array<prometheus::Histogram*, call_count> runtime_seconds_{};
  prometheus::Counter* reconnects_ = nullptr;
  prometheus::Gauge* pods_stuck_ = nullptr;
  std::array<prometheus::Counter*, refusal_count> refused_{};
  std::array<prometheus::Counter*, page_count> pages_{};
};

}  // namespace director::spawner::metrics
