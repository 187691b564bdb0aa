// Runs the decision core against the real world: serializes access to decision::Director, and
// carries out the checks it asks for (resolve, then probe) as coroutines, each on a strand of
// its own on the I/O executor. Thread-safe: decide() may be called from any connection's strand.
#pragma once

#include "config/config.hpp"
#include "decision/director.hpp"
#include "metrics/metrics.hpp"
#include "net/prober.hpp"
#include "net/resolver.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace director::server {

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

  // Returns the answer when it is known now. Otherwise calls make_deliver() once to obtain the
  // callback that will receive the answer when the check completes, and returns std::nullopt.
  template <typename MakeDeliver>
  std::optional<decision::Answer> decide(std::optional<std::string_view> username, MakeDeliver&& make_deliver) {
    const auto waiter = next_waiter_.fetch_add(1, std::memory_order_relaxed);
    decision::DecideResult result;
    {
      const std::lock_guard lock(mutex_);
      result = director_.decide(username, waiter, decision::Clock::now());
      if (!result.answer) waiting_.emplace(waiter, make_deliver());
    }
    if (result.start_check) start(std::move(*result.start_check));
    return std::move(result.answer);
  }

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
  std::atomic<decision::WaiterId> next_waiter_{1};
  // decision::Clock ticks since its epoch; 0 = never.
  std::atomic<decision::Duration::rep> last_dns_answer_{0};
  std::atomic<decision::Duration::rep> last_dns_failure_{0};
};

}  // namespace director::server
