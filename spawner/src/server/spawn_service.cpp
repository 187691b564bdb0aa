#include "server/spawn_service.hpp"

#include "log/log.hpp"
#include "net/awaitable.hpp"
#include "net/prober.hpp"
#include "server/metered.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <memory>
#include <type_traits>
#include <utility>
#include <variant>

namespace director::spawner::server {
namespace {

using metrics::RuntimeCall;

constexpr std::size_t max_log_entries = 1000;  // users whose log lines are kept (failed ones)

core::CallFailure call_failure(const runtime::RuntimeError& error) { return {error.error, error.message}; }

bool has_exited(const core::ContainerStatus& container) {
  return container.state == core::ContainerState::exited || container.state == core::ContainerState::dead;
}

std::string seconds_text(core::Clock::duration elapsed) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count();
  return std::to_string(ms / 1000) + "." + std::to_string(ms % 1000 / 100) + std::to_string(ms % 100 / 10) +
         std::to_string(ms % 10);
}

// Decrements the running count when a command coroutine ends, however it ends. It shares the
// count: a frame left suspended at shutdown is destroyed with the io_context, after the service.
struct RunningGuard {
  std::shared_ptr<std::atomic<std::size_t>> running;
  ~RunningGuard() { --*running; }
};

}  // namespace

SpawnService::SpawnService(boost::asio::any_io_executor executor, core::LifecycleSettings lifecycle,
                           SpawnSettings settings, runtime::Runtime& runtime, net::Resolver& resolver,
                           metrics::Metrics& metrics)
    : strand_(boost::asio::make_strand(std::move(executor))),
      settings_(std::move(settings)),
      runtime_(runtime),
      resolver_(resolver),
      metrics_(metrics),
      lifecycle_(std::move(lifecycle)) {}

template <typename Change>
void SpawnService::apply(std::string_view label, Change change) {
  std::vector<core::Command> commands;
  std::optional<std::pair<std::string, std::string>> fetch;  // label, container id
  {
    const std::scoped_lock lock(mutex_);
    const auto now = core::Clock::now();
    const auto before = lifecycle_.view(label).phase;
    commands = change(lifecycle_, now);
    const auto after = lifecycle_.view(label);
    // An operation ended (phases between absent and ready are an operation's): counted once,
    // timed from the wake that began it.
    const bool operation = before != core::Phase::absent && before != core::Phase::ready && before != core::Phase::failed;
    if (after.phase != before && (after.phase == core::Phase::ready || after.phase == core::Phase::failed)) {
      const auto elapsed = operation ? now - after.operation_started : core::Clock::duration{};
      if (after.phase == core::Phase::ready) {
        if (operation) {
          metrics_.spawn_finished(std::nullopt, elapsed);
          log(LogLevel::info, "container ready", {{"label", after.label}, {"seconds", seconds_text(elapsed)}});
        }
      } else if (after.failure) {
        const auto& failure = *after.failure;
        if (operation) metrics_.spawn_finished(failure.kind, elapsed);
        log(LogLevel::warn, "spawn failed",
            {{"label", after.label}, {"reason", core::to_string(failure.kind)}, {"message", failure.detail},
             {"seconds", seconds_text(elapsed)}});
        const auto& container = failure.container ? failure.container : after.container;
        // Never the logs of a container this project did not create.
        if (container && container->managed && !container->id.empty() && failure.kind != core::FailureKind::name_taken) {
          fetch.emplace(after.label, container->id);
        }
      }
    }
  }
  if (fetch) start_log_fetch(fetch->first, fetch->second, LogFetch::always);
  dispatch(std::move(commands));
}

core::UserView SpawnService::wake(const core::UserIdentity& user) {
  apply(user.label, [&](core::Lifecycle& lifecycle, core::TimePoint now) {
    return lifecycle.wake(user, now);
  });
  return view(user.label);
}

core::UserView SpawnService::view(std::string_view label) const {
  const std::scoped_lock lock(mutex_);
  return lifecycle_.view(label);
}

std::vector<core::UserView> SpawnService::views() const {
  const std::scoped_lock lock(mutex_);
  return lifecycle_.views();
}

std::map<core::Phase, std::size_t> SpawnService::count_by_phase() const {
  const std::scoped_lock lock(mutex_);
  return lifecycle_.count_by_phase();
}

std::map<core::ContainerState, std::size_t> SpawnService::containers_by_state() const {
  std::map<core::ContainerState, std::size_t> counts;
  for (const auto& view : views()) {
    if (view.container && view.container->managed) ++counts[view.container->state];
  }
  return counts;
}

void SpawnService::on_event(const core::ContainerEvent& event) {
  apply(event.label, [&](core::Lifecycle& lifecycle, core::TimePoint now) { return lifecycle.on_event(event, now); });
}

void SpawnService::on_snapshot(const std::vector<core::ContainerStatus>& containers) {
  const std::scoped_lock lock(mutex_);
  lifecycle_.on_snapshot(containers, core::Clock::now());
}

std::string SpawnService::logs(std::string_view label) const {
  const std::scoped_lock lock(mutex_);
  const auto found = logs_.find(label);
  return found == logs_.end() ? std::string() : found->second.text;
}

void SpawnService::refresh_logs(const core::UserView& view) {
  if (!view.container || !view.container->managed || view.container->id.empty()) return;
  start_log_fetch(view.label, view.container->id, LogFetch::when_stale);
}

std::string SpawnService::container_host(std::string_view label) const {
  auto host = core::container_name(lifecycle_.settings().container_template, label);
  if (!settings_.container_domain.empty()) host += "." + settings_.container_domain;
  return host;
}

void SpawnService::stop() { stopping_ = true; }

void SpawnService::dispatch(std::vector<core::Command> commands) {
  for (auto& command : commands) {
    if (stopping_) return;
    ++*running_;
    boost::asio::co_spawn(strand_, execute(std::move(command)), net::log_if_thrown("spawner command"));
  }
}

void SpawnService::start_log_fetch(const std::string& label, const std::string& id, LogFetch when) {
  {
    // Checked and marked under one lock: one fetch however many pages ask at once.
    const std::scoped_lock lock(mutex_);
    const auto found = logs_.find(label);
    if (when == LogFetch::when_stale && found != logs_.end() && found->second.container_id == id &&
        (found->second.fetching || core::Clock::now() - found->second.fetched < settings_.logs_refresh)) {
      return;
    }
    if (logs_.size() >= max_log_entries && found == logs_.end()) logs_.clear();  // bounded; refetched on demand
    auto& entry = logs_[label];
    if (entry.container_id != id) {  // never another container's lines
      entry = LogEntry{};
      entry.container_id = id;
    }
    entry.fetching = true;
  }
  if (stopping_) return;
  ++*running_;
  boost::asio::co_spawn(strand_, fetch_logs(label, id), net::log_if_thrown("spawner log fetch"));
}

boost::asio::awaitable<void> SpawnService::fetch_logs(std::string label, std::string id) {
  const RunningGuard guard{running_};
  auto result = co_await metered(metrics_, RuntimeCall::logs, runtime_.logs(id, settings_.log_lines, settings_.log_bytes));
  const std::scoped_lock lock(mutex_);
  const auto found = logs_.find(label);
  if (found == logs_.end() || found->second.container_id != id) co_return;  // a newer container's fetch took over
  auto& entry = found->second;
  entry.fetching = false;
  entry.fetched = core::Clock::now();
  if (result) {
    entry.text = std::move(*result);
  } else {
    log(LogLevel::warn, "cannot read the container's logs", {{"label", label}, {"message", result.error().message}});
  }
}

boost::asio::awaitable<void> SpawnService::execute(core::Command command) {
  const RunningGuard guard{running_};
  core::ResultValue value = core::CallFailure{core::CallError::unavailable, "not run"};
  // Whatever a command throws becomes its failure: the lifecycle must hear every command's end,
  // or the user's operation never ends and every later wake returns nothing.
  try {
    value = co_await run(command);
  } catch (const std::exception& error) {
    log(LogLevel::error, "a runtime command threw", {{"label", command.label}, {"message", error.what()}});
    value = core::CallFailure{core::CallError::unavailable, error.what()};
  }
  if (stopping_) co_return;
  const core::Result result{command.label, command.operation, std::move(value)};
  apply(command.label, [&](core::Lifecycle& lifecycle, core::TimePoint now) { return lifecycle.on_result(result, now); });
}

boost::asio::awaitable<core::ResultValue> SpawnService::run(core::Command& command) {
  if (const auto* inspect = std::get_if<core::InspectContainer>(&command.action)) {
    auto result = co_await metered(metrics_, RuntimeCall::inspect, runtime_.inspect(inspect->name));
    if (result) co_return core::Inspected{std::move(*result)};
    co_return call_failure(result.error());
  }
  if (const auto* pull = std::get_if<core::PullImage>(&command.action)) {
    auto result = co_await metered(metrics_, RuntimeCall::pull, runtime_.pull(pull->image));
    if (result) co_return core::Pulled{};
    co_return call_failure(result.error());
  }
  if (auto* create = std::get_if<core::CreateContainer>(&command.action)) {
    auto result = co_await metered(metrics_, RuntimeCall::create, runtime_.create(std::move(create->spec)));
    if (result) co_return core::Created{std::move(*result)};
    co_return call_failure(result.error());
  }
  if (const auto* start = std::get_if<core::StartContainer>(&command.action)) {
    auto result = co_await metered(metrics_, RuntimeCall::start, runtime_.start(start->id, start->user));
    if (result) co_return core::Started{};
    co_return call_failure(result.error());
  }
  if (const auto* wait = std::get_if<core::AwaitReady>(&command.action)) {
    co_return co_await await_ready(command.label, *wait);
  }
  co_return core::CallFailure{core::CallError::unavailable, "not run"};
}

boost::asio::awaitable<core::ReadyResult> SpawnService::await_ready(const std::string& label, core::AwaitReady wait) {
  const auto executor = co_await boost::asio::this_coro::executor;
  boost::asio::steady_timer pause(executor);
  const auto host = container_host(label);
  std::optional<core::ContainerStatus> last;
  auto next_inspect = core::Clock::now();  // inspect first: the container may have a health check
  bool by_health = wait.readiness == core::Readiness::health_check;
  auto poll_delay = std::min(settings_.first_poll_interval, settings_.poll_interval);
  for (;;) {
    if (stopping_) co_return core::ReadyResult{core::ReadyOutcome::timed_out, last};
    auto now = core::Clock::now();
    if (by_health || now >= next_inspect) {
      next_inspect = now + settings_.inspect_interval;
      auto inspected = co_await metered(metrics_, RuntimeCall::inspect, runtime_.inspect(wait.id));
      if (inspected) {
        if (!*inspected) co_return core::ReadyResult{core::ReadyOutcome::exited, last};  // removed meanwhile
        last = **inspected;
        if (has_exited(*last)) co_return core::ReadyResult{core::ReadyOutcome::exited, last};
        // The container has a health check after all (the image's, unknown when the spawner
        // started): its check decides, not the port.
        if (!by_health && last->health != core::Health::none) by_health = true;
        if (by_health && last->health == core::Health::healthy) co_return core::ReadyResult{core::ReadyOutcome::ready, last};
        if (by_health && last->health == core::Health::unhealthy) {
          co_return core::ReadyResult{core::ReadyOutcome::unhealthy, last};
        }
      }
    }
    if (!by_health && co_await port_accepts(host, wait.deadline)) {
      // A fresh word on the container for its view.
      auto inspected = co_await metered(metrics_, RuntimeCall::inspect, runtime_.inspect(wait.id));
      if (inspected && *inspected) last = **inspected;
      co_return core::ReadyResult{core::ReadyOutcome::ready, last};
    }
    now = core::Clock::now();
    if (now >= wait.deadline) co_return core::ReadyResult{core::ReadyOutcome::timed_out, last};
    pause.expires_at(std::min(now + poll_delay, wait.deadline));
    poll_delay = std::min(poll_delay * 2, settings_.poll_interval);
    co_await pause.async_wait(net::nothrow_awaitable);
  }
}

boost::asio::awaitable<bool> SpawnService::port_accepts(const std::string& host, core::TimePoint deadline) {
  const auto resolved = co_await resolver_.resolve(host);
  if (resolved.outcome != net::DnsOutcome::ok) co_return false;
  for (const auto& address : resolved.addresses) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - core::Clock::now());
    if (left <= std::chrono::milliseconds(0)) co_return false;
    net::ProbeOptions options;
    options.timeout = std::min(settings_.probe_timeout, left);
    const auto probed = co_await net::probe({address, settings_.container_port}, options);
    if (probed.outcome == net::ProbeOutcome::ok) co_return true;
  }
  co_return false;
}

}  // namespace director::spawner::server
