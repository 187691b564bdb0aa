// A fake runtime::Runtime for unit tests of one server class at a time (SpawnService,
// EventWatcher, the endpoints): containers in a map, scripted failures and events, call counts.
// The real runtime (DockerRuntime against Podman) is tested in tests/spawner/runtime and end to
// end. Single-threaded: use it from one io_context thread.
#pragma once

#include "runtime/runtime.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

#include "net/awaitable.hpp"

#include <chrono>
#include <deque>
#include <utility>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace director::spawner::test {

// A managed container of `label`'s, running: id "id-<label>", name "vscode-<label>".
inline core::ContainerStatus managed_running(const std::string& label) {
  core::ContainerStatus container;
  container.id = "id-" + label;
  container.name = "vscode-" + label;
  container.managed = true;
  container.label = label;
  container.username = label;
  container.state = core::ContainerState::running;
  return container;
}

class FakeRuntime : public runtime::Runtime {
 public:
  using Error = runtime::RuntimeError;

  // --- state and behaviour the test sets ---
  std::map<std::string, core::ContainerStatus> containers;  // by name
  bool available = true;                     // false: every call fails as unavailable
  std::chrono::milliseconds call_delay{0};   // every call but watch waits this long first
  std::optional<Error> create_error;         // create fails with it
  bool create_throws = false;                // create throws std::runtime_error (a bug below the runtime)
  std::optional<Error> start_error;
  bool start_exits = false;                  // a started container exits at once (exit code 3)
  core::Health health_after_start = core::Health::none;  // starting, healthy, unhealthy
  int inspects_until_healthy = 0;            // with health_after_start starting: inspects before healthy
  // Each inspect takes the first, while any are left: the container's health turns to it as the
  // inspect reads it, and the answer comes that long after (a later inspect may answer first).
  std::deque<std::pair<core::Health, std::chrono::milliseconds>> inspects_read;
  std::string logs_text = "first line\n<script>alert(1)</script>\n";
  // watch(): events sent after on_subscribed, then the stream stays open for stream_lifetime
  // (then ends with an unavailable error), or until cancelled.
  std::vector<core::ContainerEvent> events;
  std::chrono::milliseconds stream_lifetime{std::chrono::hours(1)};

  // --- what happened ---
  int pings = 0, inspects = 0, creates = 0, starts = 0, stops = 0, removes = 0, lists = 0, watches = 0, log_reads = 0;
  std::vector<std::string> stopped_ids, removed_ids;

  core::ContainerStatus* find(const std::string& name_or_id) {
    for (auto& [name, container] : containers) {
      if (name == name_or_id || container.id == name_or_id) return &container;
    }
    return nullptr;
  }

  boost::asio::awaitable<runtime::RuntimeResult<runtime::RuntimeInfo>> ping() override {
    ++pings;
    co_await delay();
    if (!available) co_return unavailable();
    co_return runtime::RuntimeInfo{"Fake 1.0 (Docker API 1.41)", "1.41"};
  }

  boost::asio::awaitable<runtime::RuntimeResult<std::optional<core::ContainerStatus>>> inspect(std::string name_or_id) override {
    ++inspects;
    co_await delay();
    if (!available) co_return unavailable();
    auto* container = find(name_or_id);
    if (container == nullptr) co_return std::optional<core::ContainerStatus>();
    if (!inspects_read.empty()) {
      const auto [health, answer_after] = inspects_read.front();
      inspects_read.pop_front();
      container->health = health;
      const auto read = *container;
      boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, answer_after);
      co_await timer.async_wait(net::nothrow_awaitable);
      co_return std::optional<core::ContainerStatus>(read);
    }
    if (container->health == core::Health::starting && inspects_until_healthy-- <= 0) {
      container->health = core::Health::healthy;
    }
    co_return std::optional<core::ContainerStatus>(*container);
  }

  boost::asio::awaitable<runtime::RuntimeResult<bool>> image_has_health_check(std::string /*image*/) override {
    co_return false;
  }

  boost::asio::awaitable<runtime::RuntimeResult<void>> pull(std::string /*image*/) override {
    co_return Error{core::CallError::image_missing, 404, "no registry here"};
  }

  boost::asio::awaitable<runtime::RuntimeResult<std::string>> create(core::ContainerSpec spec) override {
    ++creates;
    co_await delay();
    if (!available) co_return unavailable();
    if (create_error) co_return *create_error;
    if (create_throws) throw std::runtime_error("the fake runtime threw");
    if (containers.contains(spec.name)) co_return Error{core::CallError::conflict, 409, "name in use"};
    core::ContainerStatus container;
    container.id = "id-" + spec.name;
    container.name = spec.name;
    container.managed = spec.labels[std::string(core::managed_label)] == "true";
    container.label = spec.labels[std::string(core::label_label)];
    container.username = spec.labels[std::string(core::user_label)];
    container.state = core::ContainerState::created;
    containers[spec.name] = container;
    co_return container.id;
  }

  boost::asio::awaitable<runtime::RuntimeResult<void>> start(std::string id, core::UserIdentity) override {
    ++starts;
    co_await delay();
    if (!available) co_return unavailable();
    if (start_error) co_return *start_error;
    auto* container = find(id);
    if (container == nullptr) co_return Error{core::CallError::not_found, 404, "no such container"};
    if (start_exits) {
      container->state = core::ContainerState::exited;
      container->exit_code = 3;
    } else {
      container->state = core::ContainerState::running;
      container->health = health_after_start;
    }
    co_return runtime::RuntimeResult<void>();
  }

  boost::asio::awaitable<runtime::RuntimeResult<void>> stop(std::string id, std::chrono::seconds /*grace*/) override {
    ++stops;
    stopped_ids.push_back(id);
    if (!available) co_return unavailable();
    if (auto* container = find(id)) container->state = core::ContainerState::exited;
    co_return runtime::RuntimeResult<void>();
  }

  boost::asio::awaitable<runtime::RuntimeResult<void>> remove(std::string id) override {
    ++removes;
    removed_ids.push_back(id);
    if (!available) co_return unavailable();
    std::erase_if(containers, [&](const auto& entry) { return entry.second.id == id; });
    co_return runtime::RuntimeResult<void>();
  }

  boost::asio::awaitable<runtime::RuntimeResult<std::string>> logs(std::string /*id*/, unsigned /*lines*/,
                                                                   std::size_t max_bytes) override {
    ++log_reads;
    if (!available) co_return unavailable();
    co_return logs_text.substr(0, max_bytes);
  }

  boost::asio::awaitable<runtime::RuntimeResult<std::vector<core::ContainerStatus>>> list_managed() override {
    ++lists;
    co_await delay();
    if (!available) co_return unavailable();
    std::vector<core::ContainerStatus> managed;
    for (const auto& [name, container] : containers) {
      if (container.managed) managed.push_back(container);
    }
    co_return managed;
  }

  boost::asio::awaitable<runtime::RuntimeResult<void>> watch(std::function<void()> on_subscribed,
                                                             EventHandler on_event) override {
    ++watches;
    if (!available) co_return unavailable();
    on_subscribed();
    for (const auto& event : events) on_event(event);
    boost::asio::steady_timer open(co_await boost::asio::this_coro::executor, stream_lifetime);
    const auto [cancelled] = co_await open.async_wait(net::nothrow_awaitable);
    if (cancelled) co_return Error{core::CallError::unavailable, 0, "cancelled"};
    co_return Error{core::CallError::unavailable, 0, "the event stream broke"};
  }

 private:
  static Error unavailable() { return Error{core::CallError::unavailable, 0, "the fake runtime is down"}; }

  boost::asio::awaitable<void> delay() {
    if (call_delay.count() == 0) co_return;
    boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, call_delay);
    co_await timer.async_wait(net::nothrow_awaitable);
  }
};

}  // namespace director::spawner::test
