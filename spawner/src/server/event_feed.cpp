#include "server/event_feed.hpp"

#include "log/log.hpp"
#include "net/awaitable.hpp"

#include <nlohmann/json.hpp>

#include <boost/asio/post.hpp>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

namespace director::spawner::server {
namespace {

using Json = nlohmann::ordered_json;

std::string line_of(const Json& json) {
  return json.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
}

// What an event says about the container's state, for the snapshots of later subscribers.
void apply(core::ContainerStatus& container, const core::ContainerEvent& event) {
  switch (event.kind) {
    case core::EventKind::created: container.state = core::ContainerState::created; break;
    case core::EventKind::started: container.state = core::ContainerState::running; break;
    case core::EventKind::stopped: container.state = core::ContainerState::exited; break;
    case core::EventKind::died:
      container.state = core::ContainerState::exited;
      if (event.exit_code) container.exit_code = *event.exit_code;
      break;
    case core::EventKind::health: container.health = event.health; break;
    case core::EventKind::destroyed: break;
  }
}

}  // namespace

std::string snapshot_line(const std::vector<core::ContainerStatus>& containers) {
  Json list = Json::array();
  for (const auto& container : containers) {
    if (!container.managed || container.label.empty()) continue;
    Json row;
    row["label"] = container.label;
    row["id"] = container.id;
    row["state"] = core::to_string(container.state);
    row["health"] = core::to_string(container.health);
    list.push_back(std::move(row));
  }
  Json line;
  line["type"] = "snapshot";
  line["containers"] = std::move(list);
  return line_of(line);
}

std::string event_line(const core::ContainerEvent& event) {
  Json line;
  line["type"] = core::to_string(event.kind);
  line["label"] = event.label;
  line["id"] = event.id;
  // The username HAProxy's fast path may hold the container's answer under: every agent revokes
  // it, not only the one that answered (an escaped user's key is not the label).
  if (!event.username.empty()) line["username"] = event.username;
  if (event.kind == core::EventKind::health) line["health"] = core::to_string(event.health);
  if (event.kind == core::EventKind::died && event.exit_code) line["exit_code"] = *event.exit_code;
  return line_of(line);
}

std::string heartbeat_line() { return "{\"type\":\"heartbeat\"}\n"; }

Subscription::Subscription(std::chrono::milliseconds heartbeat) : heartbeat_(heartbeat) {}

boost::asio::awaitable<std::optional<std::string>> Subscription::next() {
  if (!timer_) {
    const auto executor = co_await boost::asio::this_coro::executor;
    timer_.emplace(executor);
    const std::scoped_lock lock(mutex_);
    executor_ = executor;
  }
  for (;;) {
    {
      const std::scoped_lock lock(mutex_);
      if (!queue_.empty()) {
        auto line = std::move(queue_.front());
        queue_.pop_front();
        co_return line;
      }
      if (closed_) co_return std::nullopt;
    }
    timer_->expires_after(heartbeat_);
    const auto [waited] = co_await timer_->async_wait(net::nothrow_awaitable);
    if (!waited) {
      const std::scoped_lock lock(mutex_);
      if (queue_.empty() && !closed_) co_return heartbeat_line();
    }
  }
}

bool Subscription::push(std::string line, std::size_t max_queued) {
  {
    const std::scoped_lock lock(mutex_);
    if (closed_) return false;
    if (queue_.size() >= max_queued) {
      closed_ = true;
      queue_.clear();
    } else {
      queue_.push_back(std::move(line));
    }
  }
  wake();
  const std::scoped_lock lock(mutex_);
  return !closed_;
}

void Subscription::close() {
  {
    const std::scoped_lock lock(mutex_);
    closed_ = true;
  }
  wake();
}

// The timer is touched only on the reader's executor: the cancel goes there. Before the first
// next() there is no timer to wake (next() looks at the queue before it waits).
void Subscription::wake() {
  std::optional<boost::asio::any_io_executor> executor;
  {
    const std::scoped_lock lock(mutex_);
    executor = executor_;
  }
  if (!executor) return;
  boost::asio::post(*executor, [weak = weak_from_this()] {
    if (const auto self = weak.lock(); self && self->timer_) self->timer_->cancel();
  });
}

EventFeed::EventFeed(FeedLimits limits) : limits_(limits) {}

std::string_view to_string(EventFeed::Refusal refusal) noexcept {
  switch (refusal) {
    case EventFeed::Refusal::closed: return "the spawner is stopping";
    case EventFeed::Refusal::not_following:
      return "the spawner is not following the container runtime's events (not listed yet, or its event stream "
             "ended): try again";
    case EventFeed::Refusal::full: return "too many event feed subscribers";
  }
  return "refused";
}

void throw_exception_from_error(EventFeed::Refusal refusal, const boost::source_location& /*location*/) {
  throw std::runtime_error(std::string(to_string(refusal)));
}

void EventFeed::on_snapshot(const std::vector<core::ContainerStatus>& containers) {
  const std::scoped_lock lock(mutex_);
  if (refusal_ == Refusal::not_following) refusal_.reset();
  containers_.clear();
  for (const auto& container : containers) {
    if (container.managed && !container.label.empty()) containers_[container.id] = container;
  }
  std::vector<core::ContainerStatus> known;
  for (const auto& [id, container] : containers_) known.push_back(container);
  publish(snapshot_line(known));
}

void EventFeed::on_event(const core::ContainerEvent& event) {
  const std::scoped_lock lock(mutex_);
  if (event.kind == core::EventKind::destroyed) {
    containers_.erase(event.id);
  } else {
    auto& container = containers_[event.id];
    if (container.id.empty()) {
      container.id = event.id;
      container.managed = true;
    }
    if (!event.label.empty()) container.label = event.label;
    apply(container, event);
  }
  publish(event_line(event));
}

void EventFeed::on_runtime_lost() { end_subscriptions(Refusal::not_following); }

boost::system::result<std::shared_ptr<Subscription>, EventFeed::Refusal> EventFeed::subscribe() {
  auto subscription = std::make_shared<Subscription>(limits_.heartbeat);
  const std::scoped_lock lock(mutex_);
  std::erase_if(subscribers_, [](const auto& weak) { return weak.expired(); });
  if (refusal_) return *refusal_;
  if (subscribers_.size() >= limits_.max_subscribers) return Refusal::full;
  std::vector<core::ContainerStatus> known;
  for (const auto& [id, container] : containers_) known.push_back(container);
  subscription->push(snapshot_line(known), limits_.max_queued);
  subscribers_.push_back(subscription);
  return subscription;
}

void EventFeed::close() { end_subscriptions(Refusal::closed); }

void EventFeed::end_subscriptions(Refusal why) {
  std::vector<std::shared_ptr<Subscription>> open;
  {
    const std::scoped_lock lock(mutex_);
    if (refusal_ != Refusal::closed) refusal_ = why;  // closed stays closed
    for (const auto& weak : subscribers_) {
      if (auto subscription = weak.lock()) open.push_back(std::move(subscription));
    }
    subscribers_.clear();
  }
  for (const auto& subscription : open) subscription->close();
}

std::size_t EventFeed::subscribers() const {
  const std::scoped_lock lock(mutex_);
  return static_cast<std::size_t>(std::count_if(subscribers_.begin(), subscribers_.end(),
                                                [](const auto& weak) { return !weak.expired(); }));
}

std::vector<core::ContainerStatus> EventFeed::containers() const {
  const std::scoped_lock lock(mutex_);
  std::vector<core::ContainerStatus> known;
  for (const auto& [id, container] : containers_) known.push_back(container);
  return known;
}

void EventFeed::publish(const std::string& line) {
  std::erase_if(subscribers_, [&](const auto& weak) {
    const auto subscription = weak.lock();
    if (!subscription) return true;
    if (subscription->push(line, limits_.max_queued)) return false;
    log(LogLevel::warn, "event feed subscriber too slow: closed", {{"queued_lines", std::to_string(limits_.max_queued)}});
    return true;
  });
}

}  // namespace director::spawner::server
