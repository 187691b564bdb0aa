// SpawnService: the spawner's lifecycle at work. It owns the pure core::Lifecycle, runs every
// command it returns against a runtime::Runtime (one coroutine per command, on one strand), and
// feeds each result back; the pages read views. Port readiness asks DNS for the container host
// (<prefix>-<label>[.<domain>], with net::Resolver) and connects to the container port
// (net::probe); health readiness polls inspect.
//
// Thread-safety: every public method may be called from any thread. The Lifecycle sits behind a
// mutex held only for its pure calls (never across I/O), so wake() answers at once whatever the
// runtime does; the commands run on the service's strand.
#pragma once

#include "core/lifecycle.hpp"
#include "metrics/metrics.hpp"
#include "net/resolver.hpp"
#include "runtime/runtime.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace director::spawner::server {

// The configured members come from config::Config (main.cpp) and have no defaults of their own;
// the others are this layer's.
struct SpawnSettings {
  std::string container_domain;         // CONTAINER_DOMAIN; empty: none
  std::uint16_t container_port = 0;     // CONTAINER_PORT: what port readiness connects to
  unsigned log_lines = 0;               // SPAWNER_LOG_LINES: container log lines kept for the error pages
  std::size_t log_bytes = 16 * 1024;    // at most this much of them (kept for up to 1000 users)
  // Readiness attempts start first_poll_interval apart and double up to poll_interval: a
  // container often listens within a few hundred milliseconds of its start, and a fixed 250 ms
  // between attempts added about 220 ms to the time to ready (docs/performance.md, Spawner).
  std::chrono::milliseconds first_poll_interval{10};
  std::chrono::milliseconds poll_interval{250};
  std::chrono::milliseconds inspect_interval{1000};  // port readiness: inspect this often to notice an exit
  std::chrono::milliseconds probe_timeout{1000};     // one connect attempt
  std::chrono::seconds logs_refresh{5};              // refresh_logs(): not more often than this
};

class SpawnService {
 public:
  // `runtime`, `resolver` and `metrics` must outlive the service and the commands it runs.
  SpawnService(boost::asio::any_io_executor executor, core::LifecycleSettings lifecycle, SpawnSettings settings,
               runtime::Runtime& runtime, net::Resolver& resolver, metrics::Metrics& metrics);
  SpawnService(const SpawnService&) = delete;
  SpawnService& operator=(const SpawnService&) = delete;

  // A page navigation from `user`: starts an operation when the lifecycle says so (its commands
  // run in the background) and returns the user's view at once.
  core::UserView wake(const core::UserIdentity& user);
  core::UserView view(std::string_view label) const;
  std::vector<core::UserView> views() const;
  std::map<core::Phase, std::size_t> count_by_phase() const;
  // Managed containers by their last known state (the views' containers).
  std::map<core::ContainerState, std::size_t> containers_by_state() const;

  // The runtime's word on managed containers (the event watcher's): applied to the lifecycle.
  void on_event(const core::ContainerEvent& event);
  void on_snapshot(const std::vector<core::ContainerStatus>& containers);

  // The last log lines fetched for the user's container (for the error pages); empty when none.
  std::string logs(std::string_view label) const;
  // Fetches the container's last log lines in the background, unless fetched less than
  // logs_refresh ago (the "not reachable" page shows them on its next load).
  void refresh_logs(const core::UserView& view);

  // <prefix>-<label>[.<domain>]: the host HAProxy and the agent use for the user's container.
  std::string container_host(std::string_view label) const;

  // Commands (and log fetches) running now.
  std::size_t operations_in_flight() const noexcept { return running_->load(); }
  // No command starts after this; readiness waits end at their next poll. Safe from any thread.
  void stop();
  // Whether stop() was called.
  bool stopping() const noexcept { return stopping_.load(); }

 private:
  struct LogEntry {
    std::string container_id;  // whose lines `text` holds
    std::string text;
    core::TimePoint fetched{};
    bool fetching = false;
  };
  // Runs `change` on the lifecycle under the lock, notes a phase change into ready or failed
  // (metrics, log, logs fetch), and dispatches the commands it returned.
  template <typename Change>
  void apply(std::string_view label, Change change);
  void dispatch(std::vector<core::Command> commands);
  boost::asio::awaitable<void> execute(core::Command command);
  // The command run against the runtime; its outcome as the lifecycle hears it.
  boost::asio::awaitable<core::ResultValue> run(core::Command& command);
  boost::asio::awaitable<core::ReadyResult> await_ready(const std::string& label, core::AwaitReady wait);
  boost::asio::awaitable<bool> port_accepts(const std::string& host, core::TimePoint deadline);
  boost::asio::awaitable<void> fetch_logs(std::string label, std::string id);
  enum class LogFetch : std::uint8_t { always, when_stale };  // when_stale: not within logs_refresh
  // Fetches container `id`'s lines for `label` in the background (dropping another container's).
  void start_log_fetch(const std::string& label, const std::string& id, LogFetch when);

  boost::asio::strand<boost::asio::any_io_executor> strand_;
  SpawnSettings settings_;
  runtime::Runtime& runtime_;
  net::Resolver& resolver_;
  metrics::Metrics& metrics_;

  mutable std::mutex mutex_;
  core::Lifecycle lifecycle_;                                            // guarded by mutex_
  std::map<std::string, LogEntry, std::less<>> logs_;                     // guarded by mutex_
  // Shared with each running command's guard: a coroutine frame destroyed after the service (by
  // the io_context, at shutdown) still decrements a live count.
  std::shared_ptr<std::atomic<std::size_t>> running_ = std::make_shared<std::atomic<std::size_t>>(0);
  std::atomic<bool> stopping_{false};
};

}  // namespace director::spawner::server
