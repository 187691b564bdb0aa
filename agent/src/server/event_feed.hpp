// The agent's subscriptions to the spawners' event feeds (plan.md "The feed"; docs/spawner.md
// "The event feed"): one coroutine per URL, each on a strand of its own, following
// `GET <path>` (Accept: application/x-ndjson) with net::http::stream().
//
// Contract:
// - Per feed (decision::FeedId: the URL's index in the list): the first snapshot of a
//   connection makes the feed connected and is handed to on_snapshot (one entry per label:
//   feed::FeedState); later snapshots too; each event after it goes to on_event with the
//   label's new state (nullopt: the container is gone) and the event's username. Events before a connection's first
//   snapshot are ignored (the snapshot tells).
// - A connected feed that ends (the server closed, an undecodable line, a non-2xx answer, no
//   line for `heartbeat_timeout`, 45 s: the spawner sends a heartbeat every 15 s) is lost:
//   on_lost, its labels forgotten. A connection that failed before its first snapshot was never
//   connected and calls nothing.
// - Reconnects after every end or failure: backoff from initial_backoff (100 ms) doubling to
//   max_backoff (5 s), each wait jittered to between half and all of it; back to
//   initial_backoff after a snapshot.
// - Callbacks run on the feed's strand (one at a time per feed; feeds run concurrently): the
//   receiver takes its own lock. After stop(), a callback already under way finishes and no
//   other starts (a receiver that goes away first: stop(), then wait for done()). One that
//   throws is logged and treated as a broken connection (lost, reconnect): nothing is thrown
//   unseen.
// - status() is thread-safe. stop() is safe from any thread: every coroutine returns promptly
//   (a name being resolved at that moment: within connect_timeout), nothing thrown unseen. The
//   EventFeed must outlive its coroutines: stop(), then let the io_context run out (or destroy
//   it) before destroying the EventFeed; done() says when they all returned.
#pragma once

#include "decision/director.hpp"
#include "feed/feed_decoder.hpp"
#include "feed/feed_url.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace director::server {

struct EventFeedSettings {
  std::chrono::milliseconds initial_backoff{100};
  std::chrono::milliseconds max_backoff{5'000};
  std::chrono::milliseconds heartbeat_timeout{45'000};  // no line for this long: the feed is lost
  std::chrono::milliseconds connect_timeout{5'000};     // to connect and read the response head
  std::size_t max_line = feed::FeedDecoder::default_max_line;
};

struct EventFeedCallbacks {
  std::function<void(decision::FeedId, feed::Containers)> on_snapshot;
  std::function<void(decision::FeedId, std::string_view label, std::string_view username,
                     std::optional<feed::ContainerState>)>
      on_event;
  std::function<void(decision::FeedId)> on_lost;
};

// One feed as /status shows it.
struct FeedStatus {
  std::string url;
  bool connected = false;                        // a snapshot arrived and the connection holds
  std::chrono::system_clock::time_point since;   // when `connected` took its value (start: construction)
  std::size_t labels = 0;                        // labels the feed told of (0 while not connected)
  std::uint64_t reconnects = 0;                  // connection attempts after the first
  std::string last_error;                        // why the last connection ended or failed; "" none yet
};

class EventFeed {
 public:
  EventFeed(boost::asio::any_io_executor executor, std::vector<feed::FeedUrl> urls, EventFeedCallbacks callbacks,
            EventFeedSettings settings = {});
  EventFeed(const EventFeed&) = delete;
  EventFeed& operator=(const EventFeed&) = delete;
  ~EventFeed();

  void start();
  void stop();

  std::vector<FeedStatus> status() const;
  std::size_t size() const noexcept { return feeds_.size(); }
  // Every coroutine start() spawned has returned (true before start()).
  bool done() const noexcept { return running_.load() == 0; }

 private:
  struct Feed {
    Feed(decision::FeedId id, feed::FeedUrl url, boost::asio::any_io_executor executor);
    decision::FeedId id;
    feed::FeedUrl url;
    std::string url_text;
    boost::asio::strand<boost::asio::any_io_executor> strand;
    // On strand only:
    boost::asio::steady_timer timer;  // the heartbeat watchdog and the backoff's wait; stop() cancels it
    feed::FeedState state;
    bool connected = false;
    std::chrono::milliseconds backoff{};
    std::minstd_rand random;
    std::string logged_error;  // the last failure logged as a warning (repeats go to debug)
  };

  boost::asio::awaitable<void> run(Feed& feed);
  // One connection until it ends: why it ended.
  boost::asio::awaitable<std::string> follow(Feed& feed);
  boost::asio::awaitable<void> watchdog(Feed& feed, const std::chrono::steady_clock::time_point& last_line);
  // Hands the messages to the callbacks (none once stopping).
  void deliver(Feed& feed, std::vector<feed::FeedMessage>& messages);
  void set_status(const Feed& feed, const std::function<void(FeedStatus&)>& change);

  EventFeedCallbacks callbacks_;
  EventFeedSettings settings_;
  std::vector<std::unique_ptr<Feed>> feeds_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::size_t> running_{0};
  mutable std::mutex status_mutex_;
  std::vector<FeedStatus> status_;  // by decision::FeedId; guarded by status_mutex_
};

}  // namespace director::server
