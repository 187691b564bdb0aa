#include "server/event_watcher.hpp"

#include "log/log.hpp"
#include "net/awaitable.hpp"
#include "server/metered.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <utility>

namespace director::spawner::server {
namespace {

using metrics::RuntimeCall;

std::string milliseconds_text(std::chrono::milliseconds duration) { return std::to_string(duration.count()) + "ms"; }

}  // namespace

EventWatcher::EventWatcher(boost::asio::any_io_executor executor, runtime::Runtime& runtime, SpawnService& service,
                           EventFeed& feed, metrics::Metrics& metrics, WatchSettings settings)
    : strand_(boost::asio::make_strand(std::move(executor))),
      runtime_(runtime),
      service_(service),
      feed_(feed),
      metrics_(metrics),
      settings_(settings),
      interrupt_(strand_),
      sleeper_(strand_) {}

void EventWatcher::start() {
  boost::asio::co_spawn(strand_, run(), net::log_if_thrown("runtime event watcher"));
}

void EventWatcher::stop() {
  stopping_ = true;
  boost::asio::post(strand_, [this] {
    interrupt_.cancel();
    sleeper_.cancel();
  });
}

std::optional<runtime::RuntimeInfo> EventWatcher::runtime_info() const {
  const std::scoped_lock lock(info_mutex_);
  return info_;
}

boost::asio::awaitable<void> EventWatcher::pause(std::chrono::milliseconds duration) {
  if (stopping_) co_return;
  sleeper_.expires_after(duration);
  co_await sleeper_.async_wait(net::nothrow_awaitable);
}

boost::asio::awaitable<void> EventWatcher::run() {
  auto backoff = settings_.initial_backoff;
  const auto next_backoff = [&] { backoff = std::min(backoff * 2, settings_.max_backoff); };
  while (!stopping_) {
    if (!reachable_) {
      auto pinged = co_await metered(metrics_, RuntimeCall::ping, runtime_.ping());
      if (!pinged) {
        log(LogLevel::warn, "container runtime unreachable",
            {{"message", pinged.error().message}, {"retry_in", milliseconds_text(backoff)}});
        co_await pause(backoff);
        next_backoff();
        continue;
      }
      {
        const std::scoped_lock lock(info_mutex_);
        info_ = *pinged;
      }
      reachable_ = true;
      log(LogLevel::info, "container runtime reachable",
          {{"runtime", pinged->name}, {"api_version", pinged->api_version}});
    }
    const auto subscribed = std::chrono::steady_clock::now();
    const auto error = co_await watch_once();
    connected_ = false;
    listing_ = false;
    pending_.clear();
    // A listing or health inspect still running for the ended stream is stale: it must neither
    // reopen the feed nor publish after the next snapshot.
    ++subscription_;
    latest_health_inspect_.clear();
    // Events are missed from now until the next listing: the feed stops vouching (its agents
    // fall back to TTLs) rather than hold answers nobody could take back.
    feed_.on_runtime_lost();
    if (stopping_) break;
    metrics_.event_stream_reconnected();
    if (std::chrono::steady_clock::now() - subscribed >= settings_.stable_after) backoff = settings_.initial_backoff;
    log(LogLevel::warn, "runtime event stream ended; subscribing again",
        {{"message", error ? std::string_view(error->message) : std::string_view("the runtime closed it")},
         {"retry_in", milliseconds_text(backoff)}});
    if (error && error->error == core::CallError::unavailable) reachable_ = false;
    co_await pause(backoff);
    next_backoff();
  }
  connected_ = false;
}

boost::asio::awaitable<std::optional<runtime::RuntimeError>> EventWatcher::watch_once() {
  using namespace boost::asio::experimental::awaitable_operators;
  listing_failed_ = false;
  const auto stream = [this]() -> boost::asio::awaitable<std::optional<runtime::RuntimeError>> {
    auto result = co_await metered(
        metrics_, RuntimeCall::watch,
        runtime_.watch(
            [this] {
              listing_ = true;
              pending_.clear();
              boost::asio::co_spawn(strand_, relist(++subscription_), net::log_if_thrown("runtime re-list"));
            },
            [this](const core::ContainerEvent& event) { deliver(event); }));
    if (result) co_return std::nullopt;
    co_return result.error();
  };
  interrupt_.expires_at(boost::asio::steady_timer::time_point::max());
  if (stopping_) co_return std::nullopt;
  auto ended = co_await (stream() || interrupt_.async_wait(net::nothrow_awaitable));
  if (ended.index() == 0) co_return std::get<0>(std::move(ended));
  if (listing_failed_) {
    co_return runtime::RuntimeError{core::CallError::unavailable, 0, "listing the managed containers failed"};
  }
  co_return std::nullopt;
}

boost::asio::awaitable<void> EventWatcher::relist(std::uint64_t subscription) {
  auto listed = co_await metered(metrics_, RuntimeCall::list_managed, runtime_.list_managed());
  if (subscription != subscription_ || stopping_) co_return;  // a newer subscription lists for itself
  if (!listed) {
    log(LogLevel::warn, "cannot list the managed containers", {{"message", listed.error().message}});
    listing_failed_ = true;
    interrupt_.cancel();
    co_return;
  }
  service_.on_snapshot(*listed);
  feed_.on_snapshot(*listed);
  auto pending = std::move(pending_);
  pending_.clear();
  listing_ = false;
  for (const auto& event : pending) deliver(event);
  connected_ = true;
  log(LogLevel::info, "following the runtime's events", {{"managed_containers", std::to_string(listed->size())}});
}

void EventWatcher::deliver(const core::ContainerEvent& event) {
  if (listing_) {
    if (pending_.size() >= settings_.max_pending_events) {
      listing_failed_ = true;
      interrupt_.cancel();
      return;
    }
    pending_.push_back(event);
    return;
  }
  // A health inspect begun before the container was destroyed must not bring it back.
  if (event.kind == core::EventKind::destroyed) latest_health_inspect_.erase(event.id);
  if (event.kind == core::EventKind::health && !event.id.empty()) {
    const auto number = ++health_inspects_begun_;
    latest_health_inspect_[event.id] = number;
    boost::asio::co_spawn(strand_, publish_inspected_health(event, number), net::log_if_thrown("health event inspect"));
    return;
  }
  publish(event);
}

boost::asio::awaitable<void> EventWatcher::publish_inspected_health(core::ContainerEvent event, std::uint64_t number) {
  // Podman 4.3's health event carries the status before the check that emitted it
  // (runtime/docker_api.hpp): it says "look again", and the inspected health is the news.
  auto inspected = co_await metered(metrics_, RuntimeCall::inspect, runtime_.inspect(event.id));
  const auto latest = latest_health_inspect_.find(event.id);
  if (latest == latest_health_inspect_.end() || latest->second != number) co_return;  // a later one publishes
  latest_health_inspect_.erase(latest);
  if (stopping_) co_return;
  if (!inspected) {
    log(LogLevel::warn, "cannot inspect a container after its health event",
        {{"label", event.label}, {"message", inspected.error().message}});
    co_return;
  }
  if (!*inspected) co_return;  // removed meanwhile: its remove event tells
  event.health = (*inspected)->health;
  publish(event);
}

void EventWatcher::publish(const core::ContainerEvent& event) {
  service_.on_event(event);
  feed_.on_event(event);
}

}  // namespace director::spawner::server
