// The event feed for the agents (GET /events on http_listen, NDJSON; plan: "Event feed"): each
// subscriber first gets a snapshot line of every managed container known, then one line per
// runtime event, a new snapshot line whenever the spawner re-lists (after its runtime stream
// reconnects), and a heartbeat line when nothing else was sent for `heartbeat`.
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

#include <chrono>
#include <cstddef>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
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
  void on_snapshot(const std::vector<core::ContainerStatus>& containers);
  void on_event(const core::ContainerEvent& event);

  // A new subscriber whose first line is the snapshot of now; nullptr at max_subscribers or
  // once closed. Dropping the pointer unsubscribes.
  std::shared_ptr<Subscription> subscribe();
  // Ends every subscription (their next() returns nullopt) and refuses new ones: the spawner
  // stops. Safe from any thread.
  void close();
  std::size_t subscribers() const;

  // The managed containers as the feed knows them (by id).
  std::vector<core::ContainerStatus> containers() const;

 private:
  void publish(const std::string& line);  // mutex_ held

  FeedLimits limits_;
  mutable std::mutex mutex_;
  std::map<std::string, core::ContainerStatus> containers_;  // by id
  std::vector<std::weak_ptr<Subscription>> subscribers_;
  bool closed_ = false;  // guarded by mutex_
};

}  // namespace director::spawner::server
