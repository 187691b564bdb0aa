// The event watcher keeps the spawner's view of managed containers true: it pings the runtime
// at startup (retrying with backoff while the runtime is down), then subscribes to its event
// stream; each subscription re-lists every managed container (a snapshot for the lifecycle and
// the feed), then applies each event. A stream that ends is subscribed again after a backoff
// (doubling from initial_backoff to max_backoff, back to initial_backoff after a stream that
// stayed up for stable_after), counted in director_spawner_runtime_event_stream_reconnects_total.
//
// Events that arrive while the listing is pending wait and are applied after the snapshot, so
// that an older listing never overwrites a newer event. A listing that fails ends the stream
// (the next subscription lists again). Whenever a stream ends, the feed is told
// (EventFeed::on_runtime_lost): it ends its subscriptions until the next listing.
#pragma once

#include "metrics/metrics.hpp"
#include "runtime/runtime.hpp"
#include "server/event_feed.hpp"
#include "server/spawn_service.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

namespace director::spawner::server {

struct WatchSettings {
  std::chrono::milliseconds initial_backoff{100};
  std::chrono::milliseconds max_backoff{30'000};
  std::chrono::milliseconds stable_after{60'000};
  std::size_t max_pending_events = 10'000;  // events held while a listing is pending
};

class EventWatcher {
 public:
  // Everything referenced must outlive the watcher's coroutine (until stop() and the context ends).
  EventWatcher(boost::asio::any_io_executor executor, runtime::Runtime& runtime, SpawnService& service,
               EventFeed& feed, metrics::Metrics& metrics, WatchSettings settings = {});

  void start();
  // Ends the stream and the retries; safe from any thread.
  void stop();

  // The last ping succeeded and no call since found the runtime unavailable.
  bool runtime_reachable() const noexcept { return reachable_.load(); }
  // Subscribed and listed: the view follows the runtime.
  bool stream_connected() const noexcept { return connected_.load(); }
  std::optional<runtime::RuntimeInfo> runtime_info() const;

 private:
  boost::asio::awaitable<void> run();
  // One subscription until it ends: the runtime's error, or nullopt (closed, stopped).
  boost::asio::awaitable<std::optional<runtime::RuntimeError>> watch_once();
  boost::asio::awaitable<void> relist(std::uint64_t subscription);
  boost::asio::awaitable<void> pause(std::chrono::milliseconds duration);
  // Applies an event (a health event through publish_inspected_health), or holds it while listing.
  void deliver(const core::ContainerEvent& event);
  // A health event, with the health an inspect of the container reports now; nothing when a
  // later health event's inspect (`number` is the order they began in) has begun meanwhile:
  // that one reads the newer health, and inspects may answer out of order.
  boost::asio::awaitable<void> publish_inspected_health(core::ContainerEvent event, std::uint64_t number);
  // To the service and the feed.
  void publish(const core::ContainerEvent& event);

  boost::asio::strand<boost::asio::any_io_executor> strand_;
  runtime::Runtime& runtime_;
  SpawnService& service_;
  EventFeed& feed_;
  metrics::Metrics& metrics_;
  WatchSettings settings_;

  // On strand_ only:
  boost::asio::steady_timer interrupt_;  // cancelled to end the stream (listing failed, stop)
  boost::asio::steady_timer sleeper_;
  std::uint64_t subscription_ = 0;
  bool listing_ = false;
  bool listing_failed_ = false;
  std::vector<core::ContainerEvent> pending_;
  std::uint64_t health_inspects_begun_ = 0;
  std::map<std::string, std::uint64_t> latest_health_inspect_;  // by container id, while one runs

  std::atomic<bool> stopping_{false};
  std::atomic<bool> reachable_{false};
  std::atomic<bool> connected_{false};
  mutable std::mutex info_mutex_;
  std::optional<runtime::RuntimeInfo> info_;  // guarded by info_mutex_
};

}  // namespace director::spawner::server
