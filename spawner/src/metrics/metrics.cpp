#include "metrics/metrics.hpp"

#include <prometheus/text_serializer.h>

#include <utility>

namespace director::spawner::metrics {
namespace {

using prometheus::Histogram;

// Wake to ready: a loopback container answers in well under a second, a pulled image takes
// minutes (ready_timeout defaults to 2 min).
const Histogram::BucketBoundaries time_to_ready_buckets = {0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300};
// One runtime API call: milliseconds on a local socket; pulls take minutes.
const Histogram::BucketBoundaries runtime_buckets = {1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1,
                                                     0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};

constexpr std::array<core::FailureKind, 7> failure_kinds = {
    core::FailureKind::runtime_unavailable, core::FailureKind::image_missing, core::FailureKind::name_taken,
    core::FailureKind::limits_refused,      core::FailureKind::exited,        core::FailureKind::unhealthy,
    core::FailureKind::not_ready};
constexpr std::array<core::CallError, 5> call_errors = {core::CallError::unavailable, core::CallError::not_found,
                                                        core::CallError::conflict, core::CallError::refused,
                                                        core::CallError::image_missing};
constexpr std::array<core::Phase, 8> phases = {core::Phase::absent,   core::Phase::inspecting,
                                               core::Phase::pulling,  core::Phase::creating,
                                               core::Phase::starting, core::Phase::waiting_for_ready,
                                               core::Phase::ready,    core::Phase::failed};
constexpr std::array<core::ContainerState, 8> container_states = {
    core::ContainerState::created, core::ContainerState::running, core::ContainerState::paused,
    core::ContainerState::restarting, core::ContainerState::removing, core::ContainerState::exited,
    core::ContainerState::dead, core::ContainerState::unknown};

std::string_view call_error_name(core::CallError error) {
  switch (error) {
    case core::CallError::unavailable: return "unavailable";
    case core::CallError::not_found: return "not_found";
    case core::CallError::conflict: return "conflict";
    case core::CallError::refused: return "refused";
    case core::CallError::image_missing: return "image_missing";
  }
  return "unavailable";
}

double seconds(Duration elapsed) { return std::chrono::duration<double>(elapsed).count(); }

prometheus::ClientMetric gauge_with_label(std::string name, std::string value, double sample) {
  prometheus::ClientMetric metric;
  metric.label.push_back({std::move(name), std::move(value)});
  metric.gauge.value = sample;
  return metric;
}

template <typename Key>
double count_of(const std::map<Key, std::size_t>& counts, Key key) {
  const auto found = counts.find(key);
  return found == counts.end() ? 0.0 : static_cast<double>(found->second);
}

}  // namespace

std::string_view to_string(RuntimeCall call) noexcept {
  switch (call) {
    case RuntimeCall::ping: return "ping";
    case RuntimeCall::inspect: return "inspect";
    case RuntimeCall::image_has_health_check: return "image_has_health_check";
    case RuntimeCall::pull: return "pull";
    case RuntimeCall::create: return "create";
    case RuntimeCall::start: return "start";
    case RuntimeCall::stop: return "stop";
    case RuntimeCall::remove: return "remove";
    case RuntimeCall::logs: return "logs";
    case RuntimeCall::list_managed: return "list_managed";
    case RuntimeCall::watch: return "watch";
  }
  return "unknown";
}

std::string_view to_string(RefusalKind kind) noexcept {
  switch (kind) {
    case RefusalKind::xhr: return "xhr";
    case RefusalKind::websocket: return "websocket";
    case RefusalKind::asset: return "asset";
    case RefusalKind::not_navigation: return "not_navigation";
    case RefusalKind::missing_identity: return "missing_identity";
    case RefusalKind::no_label: return "no_label";
  }
  return "unknown";
}

std::string_view to_string(PageName page) noexcept {
  switch (page) {
    case PageName::loading: return "loading";
    case PageName::failed: return "failed";
    case PageName::unreachable: return "unreachable";
    case PageName::refused: return "refused";
    case PageName::forbidden: return "forbidden";
    case PageName::no_label: return "no_label";
    case PageName::status: return "status";
  }
  return "unknown";
}

std::string_view to_string(IdleSource source) noexcept {
  switch (source) {
    case IdleSource::runtime: return "runtime";
    case IdleSource::dns: return "dns";
    case IdleSource::agent: return "agent";
    case IdleSource::haproxy: return "haproxy";
  }
  return "unknown";
}

Metrics::Metrics(std::string_view version) {
  prometheus::BuildGauge()
      .Name("director_spawner_build_info")
      .Help("The spawner's version (always 1)")
      .Register(registry_)
      .Add({{"version", std::string(version)}})
      .Set(1);

  auto& spawns = prometheus::BuildCounter()
                     .Name("director_spawner_spawns_total")
                     .Help("Operations (wake to ready) that ended, by outcome: ready or the failure kind")
                     .Register(registry_);
  spawns_ready_ = &spawns.Add({{"outcome", "ready"}});
  for (std::size_t i = 0; i < failure_kind_count; ++i) {
    spawns_failed_[i] = &spawns.Add({{"outcome", std::string(core::to_string(failure_kinds[i]))}});
  }
  time_to_ready_ = &prometheus::BuildHistogram()
                        .Name("director_spawner_time_to_ready_seconds")
                        .Help("Time from the wake that started an operation to the container being ready")
                        .Register(registry_)
                        .Add({}, time_to_ready_buckets);

  auto& retirements = prometheus::BuildCounter()
                          .Name("director_spawner_retirements_total")
                          .Help("Containers stopped or removed by the spawner, by reason and action")
                          .Register(registry_);
  for (const auto action : {core::IdleAction::stop, core::IdleAction::remove}) {
    retirements_[static_cast<std::size_t>(action)] =
        &retirements.Add({{"reason", "idle"}, {"action", std::string(core::to_string(action))}});
  }

  auto& unreadable = prometheus::BuildCounter()
                         .Name("director_spawner_idle_unreadable_total")
                         .Help("Sources an idle round could not read, by source; each makes that round retire nobody")
                         .Register(registry_);
  for (std::size_t i = 0; i < idle_source_count; ++i) {
    idle_unreadable_[i] = &unreadable.Add({{"source", std::string(to_string(static_cast<IdleSource>(i)))}});
  }

  auto& requests = prometheus::BuildCounter()
                       .Name("director_spawner_runtime_requests_total")
                       .Help("Container runtime API calls, by call and outcome (ok or the error class)")
                       .Register(registry_);
  auto& request_seconds = prometheus::BuildHistogram()
                              .Name("director_spawner_runtime_request_seconds")
                              .Help("Duration of container runtime API calls (the event stream excluded)")
                              .Register(registry_);
  for (std::size_t c = 0; c < call_count; ++c) {
    const std::string call(to_string(static_cast<RuntimeCall>(c)));
    runtime_requests_[c][0] = &requests.Add({{"call", call}, {"outcome", "ok"}});
    for (std::size_t e = 0; e < call_error_count; ++e) {
      runtime_requests_[c][1 + e] = &requests.Add({{"call", call}, {"outcome", std::string(call_error_name(call_errors[e]))}});
    }
    if (static_cast<RuntimeCall>(c) != RuntimeCall::watch) {
      runtime_seconds_[c] = &request_seconds.Add({{"call", call}}, runtime_buckets);
    }
  }

  reconnects_ = &prometheus::BuildCounter()
                     .Name("director_spawner_runtime_event_stream_reconnects_total")
                     .Help("Times the runtime's event stream ended and was subscribed again")
                     .Register(registry_)
                     .Add({});
  pods_stuck_ = &prometheus::BuildGauge()
                     .Name("director_spawner_kubernetes_pods_stuck_terminating")
                     .Help("Users' Pods a start or stop found stuck Terminating (a lost node: a force deletion "
                           "removes them) and not seen gone since; always 0 with a Docker runtime")
                     .Register(registry_)
                     .Add({});

  auto& refused = prometheus::BuildCounter()
                      .Name("director_spawner_wake_refused_total")
                      .Help("Requests that woke nothing, by kind (the wake policy, or the director's headers missing)")
                      .Register(registry_);
  for (std::size_t i = 0; i < refusal_count; ++i) {
    refused_[i] = &refused.Add({{"kind", std::string(to_string(static_cast<RefusalKind>(i)))}});
  }
  auto& pages = prometheus::BuildCounter()
                    .Name("director_spawner_pages_total")
                    .Help("Responses of the pages listener, by page")
                    .Register(registry_);
  for (std::size_t i = 0; i < page_count; ++i) {
    pages_[i] = &pages.Add({{"page", std::string(to_string(static_cast<PageName>(i)))}});
  }
}

Metrics::~Metrics() = default;

void Metrics::spawn_finished(std::optional<core::FailureKind> failure, Duration elapsed) {
  if (!failure) {
    spawns_ready_->Increment();
    time_to_ready_->Observe(seconds(elapsed));
    return;
  }
  const auto index = static_cast<std::size_t>(*failure);
  if (index < failure_kind_count) spawns_failed_[index]->Increment();
}

void Metrics::retired(core::IdleAction action) {
  const auto index = static_cast<std::size_t>(action);
  if (index < retirements_.size()) retirements_[index]->Increment();
}

void Metrics::idle_source_unreadable(IdleSource source) {
  const auto index = static_cast<std::size_t>(source);
  if (index < idle_source_count) idle_unreadable_[index]->Increment();
}

void Metrics::runtime_call(RuntimeCall call, std::optional<core::CallError> error, Duration elapsed) {
  const auto c = static_cast<std::size_t>(call);
  if (c >= call_count) return;
  const auto e = error ? 1 + static_cast<std::size_t>(*error) : 0;
  if (e <= call_error_count) runtime_requests_[c][e]->Increment();
  if (runtime_seconds_[c] != nullptr) runtime_seconds_[c]->Observe(seconds(elapsed));
}

void Metrics::event_stream_reconnected() { reconnects_->Increment(); }

void Metrics::kubernetes_pods_stuck(std::size_t count) { pods_stuck_->Set(static_cast<double>(count)); }

void Metrics::wake_refused(RefusalKind kind) {
  const auto index = static_cast<std::size_t>(kind);
  if (index < refusal_count) refused_[index]->Increment();
}

void Metrics::page_served(PageName page) {
  const auto index = static_cast<std::size_t>(page);
  if (index < page_count) pages_[index]->Increment();
}

std::uint64_t Metrics::event_stream_reconnects() const {
  return static_cast<std::uint64_t>(reconnects_->Value());
}

std::vector<prometheus::MetricFamily> Metrics::collect(const StateSample& sample) const {
  using prometheus::MetricType;
  auto families = registry_.Collect();
  prometheus::MetricFamily users{"director_spawner_users", "Users the spawner knows, by lifecycle phase",
                                 MetricType::Gauge, {}};
  for (const auto phase : phases) {
    users.metric.push_back(
        gauge_with_label("phase", std::string(core::to_string(phase)), count_of(sample.users_by_phase, phase)));
  }
  families.push_back(std::move(users));
  prometheus::MetricFamily containers{"director_spawner_containers",
                                      "Managed containers the spawner knows of, by runtime state",
                                      MetricType::Gauge, {}};
  for (const auto state : container_states) {
    containers.metric.push_back(gauge_with_label("state", std::string(core::to_string(state)),
                                                 count_of(sample.containers_by_state, state)));
  }
  families.push_back(std::move(containers));
  prometheus::ClientMetric subscribers;
  subscribers.gauge.value = static_cast<double>(sample.feed_subscribers);
  families.push_back(prometheus::MetricFamily{"director_spawner_event_feed_subscribers",
                                              "Open GET /events streams (the agents' event feed)",
                                              MetricType::Gauge, {std::move(subscribers)}});
  return families;
}

std::string Metrics::serialize(const StateSample& sample) const {
  return prometheus::TextSerializer{}.Serialize(collect(sample));
}

}  // namespace director::spawner::metrics
