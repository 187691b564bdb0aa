// The event feed for the agents (GET /events on http_listen, NDJSON; plan: "Event feed"): each
// subscriber first gets a snapshot line of every managed container known, then one line per
// runtime event, and a heartbeat line when nothing else was sent for `heartbeat`.
//
// The feed vouches for what it sends only while the spawner follows the runtime's events: from
// a listing (on_snapshot) until the runtime's event stream ends (on_runtime_lost), which ends
// every subscription and refuses new ones until the next listing. An agent then falls back to
// TTLs for the gap, in which events are missed (a stop, an address handed to another user's
// container), instead of holding answers nobody can take back.
//
// Lines (each one JSON object and '\n'):
//   {"type":"snapshot","containers":[{"label":"alice","id":"...","state":"running","health":"healthy"}, ...]}
//   {"type":"started"|"stopped"|"died"|"health"|"created"|"destroyed","label":"alice","id":"...",
//    "health":"healthy" (health only),"exit_code":137 (died only, when known)}
//   {"type":"heartbeat"}
//
// Bounded: at most max_subscribers streams, each with at most max_queued lines not yet taken (a
// subscriber that falls that far behind is closed: it reconnects and gets a fresh snapshot).
// Thread-safe: publishers call from any thread; each Subscription is read by one coroutine at a
// time, whose executor must be a strand (or a single-threaded context).
#pragma once

#include "core/container.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace director::spawner::server {

struct FeedLimits {
  std::size_t max_subscribers = 64;  // one stream per agent; main.cpp caps the /events listener by it
  std::size_t max_queued = 4096;
  std::chrono::milliseconds heartbeat{15'000};
};

// The lines, pure.
std::string snapshot_line(const std::vector<core::ContainerStatus>& containers);
std::string event_line(const core::ContainerEvent& event);
std::string heartbeat_line();

class EventFeed;

class Subscription : public std::enable_shared_from_this<Subscription> {
 public:
  explicit Subscription(std::chrono::milliseconds heartbeat);
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;

  // The next line (a heartbeat after `heartbeat` without one); nullopt once the feed closed this
  // subscription (the feed stopped, or the subscriber fell too far behind).
  boost::asio::awaitable<std::optional<std::string>> next();

 private:
  friend class EventFeed;
  // From any thread: queue a line (false: over `max_queued`, now closed) or close.
  bool push(std::string line, std::size_t max_queued);
  void close();
  void wake();

  std::chrono::milliseconds heartbeat_;
  // The reader's: created by the first next(), on the reader's executor, used there only.
  std::optional<boost::asio::steady_timer> timer_;
  std::mutex mutex_;
  std::optional<boost::asio::any_io_executor> executor_;  // the reader's; guarded by mutex_
  std::deque<std::string> queue_;                         // guarded by mutex_
  bool closed_ = false;                                   // guarded by mutex_
};

class EventFeed {
 public:
  explicit EventFeed(FeedLimits limits = {});

  // What the watcher learns: published to every subscriber, and kept for new ones' snapshot.
  // A snapshot (a listing) makes the feed follow the runtime again.
  void on_snapshot(const std::vector<core::ContainerStatus>& containers);
  void on_event(const core::ContainerEvent& event);
  // The runtime's event stream ended: every subscription ends, and new ones are refused
  // (not_following) until the next on_snapshot. Safe from any thread.
  void on_runtime_lost();

  // Why subscribe() refused.
  enum class Refusal : std::uint8_t {
    closed,         // close(): the spawner stops
    not_following,  // no listing yet, or the runtime's event stream ended since the last
    full,           // max_subscribers streams already
  };
  // A new subscriber whose first line is the snapshot of now, or why not. Dropping the pointer
  // unsubscribes.
  boost::system::result<std::shared_ptr<Subscription>, Refusal> subscribe();
  // Ends every subscription (their next() returns nullopt) and refuses new ones: the spawner
  // stops. Safe from any thread.
  void close();
  std::size_t subscribers() const;

  // The managed containers as the feed knows them (by id).
  std::vector<core::ContainerStatus> containers() const;

 private:
  void publish(const std::string& line);  // mutex_ held
  // Ends every subscription; new ones are refused for `why`.
  void end_subscriptions(Refusal why);

  FeedLimits limits_;
  mutable std::mutex mutex_;
  std::map<std::string, core::ContainerStatus> containers_;  // by id
  std::vector<std::weak_ptr<Subscription>> subscribers_;
  std::optional<Refusal> refusal_ = Refusal::not_following;  // guarded by mutex_; nullopt: subscribe
};

// Why, for a subscriber (the /events 503) and logs.
std::string_view to_string(EventFeed::Refusal refusal) noexcept;
// For boost::system::result's value(): throws std::runtime_error with to_string(refusal).
[[noreturn]] void throw_exception_from_error(EventFeed::Refusal refusal, const boost::source_location& location);

}  // namespace director::spawner::server
