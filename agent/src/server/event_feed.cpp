#include "server/event_feed.hpp"

#include "log/log.hpp"
#include "net/awaitable.hpp"
#include "net/http_client.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/verb.hpp>

#include <algorithm>
#include <exception>
#include <utility>
#include <variant>

namespace director::server {
namespace {

namespace http = net::http;
using SteadyClock = std::chrono::steady_clock;

std::string milliseconds_text(std::chrono::milliseconds duration) { return std::to_string(duration.count()) + "ms"; }

}  // namespace

EventFeed::Feed::Feed(decision::FeedId feed_id, feed::FeedUrl feed_url, boost::asio::any_io_executor executor)
    : id(feed_id),
      url(std::move(feed_url)),
      url_text(feed::to_string(url)),
      strand(boost::asio::make_strand(std::move(executor))),
      timer(strand),
      random(std::random_device{}()) {}

EventFeed::EventFeed(boost::asio::any_io_executor executor, std::vector<feed::FeedUrl> urls,
                     EventFeedCallbacks callbacks, EventFeedSettings settings)
    : callbacks_(std::move(callbacks)), settings_(settings) {
  const auto now = std::chrono::system_clock::now();
  for (auto& url : urls) {
    feeds_.push_back(std::make_unique<Feed>(static_cast<decision::FeedId>(feeds_.size()), std::move(url), executor));
    FeedStatus status;
    status.url = feeds_.back()->url_text;
    status.since = now;
    status_.push_back(std::move(status));
  }
}

EventFeed::~EventFeed() = default;

void EventFeed::start() {
  for (auto& feed : feeds_) {
    ++running_;
    boost::asio::co_spawn(feed->strand, run(*feed), [this, what = "event feed " + feed->url_text](std::exception_ptr thrown) {
      net::log_if_thrown(what)(thrown);
      --running_;
    });
  }
}

void EventFeed::stop() {
  stopping_ = true;
  for (auto& feed : feeds_) {
    boost::asio::post(feed->strand, [&timer = feed->timer] { timer.cancel(); });
  }
}

std::vector<FeedStatus> EventFeed::status() const {
  const std::scoped_lock lock(status_mutex_);
  return status_;
}

void EventFeed::set_status(const Feed& feed, const std::function<void(FeedStatus&)>& change) {
  const std::scoped_lock lock(status_mutex_);
  change(status_[feed.id]);
}

boost::asio::awaitable<void> EventFeed::run(Feed& feed) {
  feed.backoff = settings_.initial_backoff;
  bool first = true;
  while (!stopping_) {
    if (!first) set_status(feed, [](FeedStatus& status) { ++status.reconnects; });
    first = false;
    auto ended = co_await follow(feed);
    if (stopping_) break;
    const bool was_connected = feed.connected;
    feed.connected = false;
    feed.state.clear();
    set_status(feed, [&](FeedStatus& status) {
      status.last_error = ended;
      status.labels = 0;
      if (was_connected) {
        status.connected = false;
        status.since = std::chrono::system_clock::now();
      }
    });
    if (was_connected && callbacks_.on_lost) callbacks_.on_lost(feed.id);

    // Jittered: between half and all of the backoff.
    const auto half = feed.backoff / 2;
    const auto wait = half + std::chrono::milliseconds(std::uniform_int_distribution<std::chrono::milliseconds::rep>(
                                 0, std::max<std::chrono::milliseconds::rep>(0, (feed.backoff - half).count()))(feed.random));
    if (was_connected || ended != feed.logged_error) {
      log(LogLevel::warn, was_connected ? "event feed lost" : "event feed unavailable",
          {{"url", feed.url_text}, {"error", ended}, {"retry_in", milliseconds_text(wait)}});
      feed.logged_error = ended;
    } else {
      log(LogLevel::debug, "event feed still unavailable",
          {{"url", feed.url_text}, {"error", ended}, {"retry_in", milliseconds_text(wait)}});
    }
    feed.backoff = std::min(feed.backoff * 2, settings_.max_backoff);
    if (stopping_) break;
    feed.timer.expires_after(wait);
    co_await feed.timer.async_wait(net::nothrow_awaitable);
  }
  if (feed.connected) {
    feed.connected = false;
    feed.state.clear();
    set_status(feed, [](FeedStatus& status) {
      status.connected = false;
      status.labels = 0;
      status.since = std::chrono::system_clock::now();
    });
  }
}

boost::asio::awaitable<std::string> EventFeed::follow(Feed& feed) {
  using namespace boost::asio::experimental::awaitable_operators;
  namespace bhttp = boost::beast::http;

  http::ClientRequest request(bhttp::verb::get, feed.url.path, 11);
  request.set(bhttp::field::host, feed.url.port == 80 ? feed.url.host : feed.url.host + ":" + std::to_string(feed.url.port));
  request.set(bhttp::field::accept, "application/x-ndjson");
  request.set(bhttp::field::user_agent, "director-agent");

  feed::FeedDecoder decoder(settings_.max_line);
  auto last_line = SteadyClock::now();
  std::optional<std::string> failure;
  // A refusal's body (the spawner's {"error": why}), its first bytes, for the log and /status.
  constexpr std::size_t refusal_shown = 300;
  bool refused = false;
  std::string refusal_body;
  const auto on_head = [&](const http::StreamHead& head) {
    if (head.result_int() / 100 != 2) {
      refused = true;
      failure = "HTTP " + std::to_string(head.result_int()) + " from " + feed.url_text;
    }
  };
  const auto on_data = [&](std::string_view data) {
    if (refused) {
      refusal_body.append(data.substr(0, refusal_shown - std::min(refusal_shown, refusal_body.size())));
      return refusal_body.size() < refusal_shown && !stopping_;
    }
    if (failure || stopping_) return false;
    const auto lines_before = decoder.lines();
    auto decoded = decoder.decode(data);
    if (decoder.lines() != lines_before) last_line = SteadyClock::now();
    if (!decoded) {
      failure = "undecodable feed from " + feed.url_text + ": " + decoded.error().message;
      return false;
    }
    try {
      deliver(feed, *decoded);
    } catch (const std::exception& error) {  // a receiver's bug: logged, and the feed starts over
      failure = std::string("an event feed callback failed: ") + error.what();
      log(LogLevel::error, "event feed callback failed", {{"url", feed.url_text}, {"error", error.what()}});
      return false;
    }
    return !stopping_;
  };

  http::ClientLimits limits;
  limits.timeout = settings_.connect_timeout;
  limits.body_limit = 64 * 1024;  // of a refusal's body
  const http::TcpEndpoint endpoint{feed.url.host, feed.url.port};
  auto outcome = co_await (http::stream(endpoint, std::move(request), on_head, on_data, limits) ||
                           watchdog(feed, last_line));
  if (stopping_) co_return "stopped";
  if (refused) {
    for (auto& c : refusal_body) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
    }
    while (!refusal_body.empty() && refusal_body.back() == ' ') refusal_body.pop_back();
    if (!refusal_body.empty()) *failure += ": " + refusal_body;
  }
  if (failure) co_return *failure;
  if (outcome.index() == 1) {
    co_return "no line from " + feed.url_text + " for " + milliseconds_text(settings_.heartbeat_timeout);
  }
  const auto& streamed = std::get<0>(outcome);
  if (!streamed) co_return streamed.error().message;
  co_return feed.url_text + " closed the feed";
}

// Returns when no line came for heartbeat_timeout, or on stop(). When the stream ends first, `||`
// cancels it: its next wait throws (asio's throw_if_cancelled), which `||` discards.
boost::asio::awaitable<void> EventFeed::watchdog(Feed& feed, const SteadyClock::time_point& last_line) {
  for (;;) {
    if (stopping_) co_return;
    const auto deadline = last_line + settings_.heartbeat_timeout;
    if (SteadyClock::now() >= deadline) co_return;
    feed.timer.expires_at(deadline);
    co_await feed.timer.async_wait(net::nothrow_awaitable);
  }
}

void EventFeed::deliver(Feed& feed, std::vector<feed::FeedMessage>& messages) {
  for (auto& message : messages) {
    if (stopping_) return;
    if (auto* snapshot = std::get_if<feed::Snapshot>(&message)) {
      auto containers = feed.state.apply(*snapshot);
      const bool was_connected = std::exchange(feed.connected, true);
      feed.backoff = settings_.initial_backoff;
      set_status(feed, [&](FeedStatus& status) {
        status.labels = feed.state.labels();
        if (!was_connected) {
          status.connected = true;
          status.since = std::chrono::system_clock::now();
        }
      });
      if (!was_connected) {
        log(LogLevel::info, "event feed connected",
            {{"url", feed.url_text}, {"labels", std::to_string(feed.state.labels())}});
        feed.logged_error.clear();
      }
      if (callbacks_.on_snapshot) callbacks_.on_snapshot(feed.id, std::move(containers));
    } else if (const auto* event = std::get_if<feed::Event>(&message)) {
      if (!feed.connected) continue;  // before the connection's snapshot: the snapshot tells
      auto change = feed.state.apply(*event);
      if (!change) continue;
      set_status(feed, [&](FeedStatus& status) { status.labels = feed.state.labels(); });
      if (callbacks_.on_event) callbacks_.on_event(feed.id, change->label, event->username, std::move(change->state));
    }
  }
}

}  // namespace director::server
