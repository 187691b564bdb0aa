// Runs the decision core against the real world: serializes access to decision::Director, and
// carries out the checks it asks for (resolve, then probe) as coroutines, each on a strand of
// its own on the I/O executor. Thread-safe: decide() may be called from any connection's strand,
// the feed callbacks from the event feeds' strand, on_haproxy_reachability from the invalidator's.
//
// What the core says HAProxy must forget (an Invalidation after a feed change, a Completion that
// found an alive container not alive) goes to the HaproxyClearing it is connected to
// (HaproxyInvalidator in the agent); checks the core asks for start at once.
#pragma once

#include "config/config.hpp"
#include "decision/director.hpp"
#include "metrics/metrics.hpp"
#include "net/prober.hpp"
#include "net/resolver.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace director::server {

// Where the HAProxy keys to forget go: clear(keys) clears those keys, clear_all() the whole
// fast_path table, in every HAProxy (HaproxyInvalidator in the agent; a fake in tests). Both are
// called outside the DecisionService's lock and must not block.
struct HaproxyClearing {
  std::function<void(std::vector<std::string> keys)> clear;
  std::function<void()> clear_all;
};

class DecisionService {
 public:
  // Receives a deferred answer exactly once, on the thread that completed the check.
  using Deliver = std::function<void(const decision::Answer&)>;

  // How a check looks a container host up: Resolver::resolve in the agent.
  using Lookup = std::function<boost::asio::awaitable<net::ResolveResult>(std::string host)>;

  // Reports DNS lookups, probes and checks in flight to `metrics`, which must outlive it.
  DecisionService(boost::asio::any_io_executor executor, const config::Config& config, net::Resolver& resolver,
                  metrics::Metrics& metrics);
  // The same with another lookup, for tests (e.g. one that throws). A check whose lookup or
  // probe throws fails: it is logged, and its waiters get a not-alive answer (dns-error).
  DecisionService(boost::asio::any_io_executor executor, const config::Config& config, Lookup lookup,
                  metrics::Metrics& metrics);

  // Sends what the core invalidates in HAProxy to `clearing` from now on (before that: nowhere).
  // Call before the I/O threads run (it is not synchronized with the callbacks below).
  void connect_haproxy(HaproxyClearing clearing);

  // Returns the answer when it is known now. Otherwise calls make_deliver() once to obtain the
  // callback that will receive the answer when the check completes, and returns std::nullopt.
  // `retry`: HAProxy reports that the user's last connection failed (Director::decide).
  template <typename MakeDeliver>
  std::optional<decision::Answer> decide(std::optional<std::string_view> username, bool retry,
                                         MakeDeliver&& make_deliver) {
    const auto waiter = next_waiter_.fetch_add(1, std::memory_order_relaxed);
    decision::DecideResult result;
    std::uint64_t retries = 0;
    {
      const std::lock_guard lock(mutex_);
      if (retry) retries = director_.stats().retries;
      result = director_.decide(username, waiter, decision::Clock::now(), retry);
      if (retry) retries = director_.stats().retries - retries;
      if (!result.answer) waiting_.emplace(waiter, make_deliver());
    }
    if (retries > 0) metrics_.invalidated(metrics::InvalidationCause::retry, retries);
    if (result.start_check) start(std::move(*result.start_check));
    return std::move(result.answer);
  }

  // What the event feeds report (EventFeed's callbacks), passed to the core under the lock; the
  // invalidations they cause are carried out (checks started, HAProxy keys cleared).
  void on_feed_snapshot(decision::FeedId feed,
                        std::vector<std::pair<std::string, decision::ContainerState>> containers);
  void on_feed_event(decision::FeedId feed, std::string_view label, std::string_view username,
                     std::optional<decision::ContainerState> state);
  void on_feed_lost(decision::FeedId feed);
  // Whether every HAProxy runtime socket is reachable (HaproxyInvalidator's on_reachability): only
  // then may HAProxy hold answers under the event TTL.
  void on_haproxy_reachability(bool all_reachable);

  decision::Stats stats() const;

  // When the checks' DNS lookups last got an answer (ok or no_such_host) and last failed
  // (error), for readiness. Absent: never since the start.
  struct DnsHealth {
    std::optional<decision::TimePoint> last_answer;
    std::optional<decision::TimePoint> last_failure;
  };
  DnsHealth dns_health() const;

  // Calls fn(const decision::Director&) with the core locked.
  template <typename Fn>
  void inspect(Fn&& fn) const {
    const std::lock_guard lock(mutex_);
    fn(director_);
  }

 private:
  void start(decision::CheckPlan plan);
  // Starts the invalidation's checks and clears its keys (or the whole tables) in HAProxy.
  void apply(decision::Invalidation invalidation);
  void clear_in_haproxy(std::vector<std::string> keys);
  boost::asio::awaitable<void> run(decision::CheckPlan plan);
  // Resolves the plan's host and probes the address: what the check found.
  boost::asio::awaitable<decision::CheckResult> observe(const decision::CheckPlan& plan);

  void record_lookup(decision::DnsOutcome outcome, decision::TimePoint started, decision::TimePoint finished);

  boost::asio::any_io_executor executor_;
  Lookup lookup_;
  metrics::Metrics& metrics_;
  net::ProbeOptions probe_options_;
  mutable std::mutex mutex_;
  decision::Director director_;                            // guarded by mutex_
  std::unordered_map<decision::WaiterId, Deliver> waiting_;  // guarded by mutex_
  HaproxyClearing haproxy_;  // set before the I/O threads run
  std::atomic<decision::WaiterId> next_waiter_{1};
  // decision::Clock ticks since its epoch; 0 = never.
  std::atomic<decision::Duration::rep> last_dns_answer_{0};
  std::atomic<decision::Duration::rep> last_dns_failure_{0};
};

}  // namespace director::server
