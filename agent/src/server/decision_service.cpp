#include "server/decision_service.hpp"

#include "log/log.hpp"
#include "net/awaitable.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/strand.hpp>

#include <string>
#include <vector>

namespace director::server {

DecisionService::DecisionService(boost::asio::any_io_executor executor, const config::Config& config,
                                 net::Resolver& resolver, metrics::Metrics& metrics)
    : DecisionService(
          std::move(executor), config, [&resolver](std::string host) { return resolver.resolve(std::move(host)); },
          metrics) {}

DecisionService::DecisionService(boost::asio::any_io_executor executor, const config::Config& config,
                                 Lookup lookup, metrics::Metrics& metrics)
    : executor_(std::move(executor)), lookup_(std::move(lookup)), metrics_(metrics), director_(config.decision) {
  probe_options_.timeout = config.probe.timeout;
  if (config.probe.mode == config::ProbeMode::http) probe_options_.http_path = config.probe.http_path;
}

void DecisionService::connect_haproxy(HaproxyClearing clearing) { haproxy_ = std::move(clearing); }

void DecisionService::on_feed_snapshot(decision::FeedId feed,
                                       std::vector<std::pair<std::string, decision::ContainerState>> containers) {
  metrics_.feed_message(metrics::FeedMessage::snapshot);
  decision::Invalidation invalidation;
  std::uint64_t invalidated = 0;
  {
    const std::lock_guard lock(mutex_);
    const auto before = director_.stats().invalidations;
    invalidation = director_.feed_snapshot(feed, std::move(containers), decision::Clock::now());
    invalidated = director_.stats().invalidations - before;
  }
  metrics_.invalidated(metrics::InvalidationCause::event, invalidated);
  apply(std::move(invalidation));
}

void DecisionService::on_feed_event(decision::FeedId feed, std::string_view label, std::string_view username,
                                    std::optional<decision::ContainerState> state) {
  metrics_.feed_message(metrics::FeedMessage::event);
  decision::Invalidation invalidation;
  std::uint64_t invalidated = 0;
  {
    const std::lock_guard lock(mutex_);
    const auto before = director_.stats().invalidations;
    invalidation = director_.feed_event(feed, label, username, std::move(state), decision::Clock::now());
    invalidated = director_.stats().invalidations - before;
  }
  metrics_.invalidated(metrics::InvalidationCause::event, invalidated);
  apply(std::move(invalidation));
}

void DecisionService::on_feed_lost(decision::FeedId feed) {
  decision::Invalidation invalidation;
  std::uint64_t invalidated = 0;
  {
    // A lost feed probes nobody: its labels fall back to the TTLs. They are what it counts.
    const std::lock_guard lock(mutex_);
    const auto covered_before = director_.covered_labels();
    invalidation = director_.feed_lost(feed, decision::Clock::now());
    invalidated = covered_before - director_.covered_labels();
  }
  metrics_.invalidated(metrics::InvalidationCause::feed_lost, invalidated);
  apply(std::move(invalidation));
}

void DecisionService::on_haproxy_reachability(bool all_reachable) {
  const std::lock_guard lock(mutex_);
  director_.set_haproxy_invalidation(all_reachable);
}

void DecisionService::apply(decision::Invalidation invalidation) {
  for (auto& plan : invalidation.checks) start(std::move(plan));
  if (invalidation.clear_all) {
    // The whole tables go: the keys would be cleared twice.
    if (haproxy_.clear_all) haproxy_.clear_all();
  } else {
    clear_in_haproxy(std::move(invalidation.haproxy_keys));
  }
}

void DecisionService::clear_in_haproxy(std::vector<std::string> keys) {
  if (!keys.empty() && haproxy_.clear) haproxy_.clear(std::move(keys));
}

decision::Stats DecisionService::stats() const {
  const std::lock_guard lock(mutex_);
  return director_.stats();
}

DecisionService::DnsHealth DecisionService::dns_health() const {
  const auto as_time = [](decision::Duration::rep ticks) -> std::optional<decision::TimePoint> {
    if (ticks == 0) return std::nullopt;
    return decision::TimePoint(decision::Duration(ticks));
  };
  return {as_time(last_dns_answer_.load(std::memory_order_relaxed)),
          as_time(last_dns_failure_.load(std::memory_order_relaxed))};
}

void DecisionService::record_lookup(decision::DnsOutcome outcome, decision::TimePoint started,
                            decision::TimePoint finished) {
  metrics_.dns_lookup_finished(outcome, finished - started);
  auto& last = outcome == decision::DnsOutcome::error ? last_dns_failure_ : last_dns_answer_;
  last.store(finished.time_since_epoch().count(), std::memory_order_relaxed);
}

namespace {

// One line per change of a user's state: never per request. event is the new state, previous
// the reason of the check before this one (none on the user's first check).
void log_change(const decision::CheckPlan& plan, const decision::Completion& completion) {
  const auto& answer = completion.answer;
  const auto address = answer.address ? answer.address->to_string() : std::string();
  std::vector<LogField> fields{{"event", answer.alive ? "alive" : "not-alive"},
                               {"label", plan.label},
                               {"host", plan.host},
                               {"reason", to_string(answer.reason)}};
  if (!address.empty()) fields.emplace_back("address", address);
  fields.emplace_back("previous", completion.previous_reason ? to_string(*completion.previous_reason) : "none");
  log(config::LogLevel::info, answer.alive ? "user container is alive" : "user container is not alive", fields);
}

}  // namespace

void DecisionService::start(decision::CheckPlan plan) {
  // A strand per check: probe() races a connect against a timer with Asio's awaitable
  // operators, which must not run on several threads at once.
  boost::asio::co_spawn(boost::asio::make_strand(executor_), run(std::move(plan)), net::log_if_thrown("check"));
}

boost::asio::awaitable<void> DecisionService::run(decision::CheckPlan plan) {
  metrics_.check_started();
  decision::CheckResult result;
  try {
    result = co_await observe(plan);
  } catch (...) {
    // Failed, not lost: the user would stay "checking" and every later request wait for it.
    net::log_if_thrown("check of " + plan.host)(std::current_exception());
    result = {};  // no address: not alive, dns-error
  }

  decision::Completion completion;
  std::vector<Deliver> deliveries;
  {
    const std::lock_guard lock(mutex_);
    completion = director_.complete(plan.label, result, decision::Clock::now());
    metrics_.check_finished();
    deliveries.reserve(completion.waiters.size());
    for (const auto waiter : completion.waiters) {
      const auto found = waiting_.find(waiter);
      if (found == waiting_.end()) continue;
      deliveries.push_back(std::move(found->second));
      waiting_.erase(found);
    }
  }
  if (completion.start_check) {
    // The check overlapped a feed change of its label: its result is not trusted. Its waiters
    // stay queued for the repeat, and nothing is logged about a state nobody was told.
    start(std::move(*completion.start_check));
  } else if (completion.alive_changed || completion.previous_reason != completion.answer.reason) {
    log_change(plan, completion);
  }
  // The keys of a label found no longer alive, and those of entries the cache evicted meanwhile.
  if (completion.alive_changed && !completion.answer.alive && completion.previous_reason) {
    metrics_.invalidated(metrics::InvalidationCause::not_alive, 1);
  }
  clear_in_haproxy(std::move(completion.haproxy_keys));
  for (auto& deliver : deliveries) deliver(completion.answer);
}

boost::asio::awaitable<decision::CheckResult> DecisionService::observe(const decision::CheckPlan& plan) {
  decision::CheckResult result;
  const auto lookup_started = decision::Clock::now();
  const auto resolved = co_await lookup_(plan.host);
  record_lookup(resolved.outcome, lookup_started, decision::Clock::now());
  result.dns = resolved.outcome;
  if (resolved.outcome == decision::DnsOutcome::ok && !resolved.addresses.empty()) {
    result.address = resolved.addresses.front();
  } else if (resolved.outcome == decision::DnsOutcome::error) {
    result.address = plan.fallback;
  }
  if (result.address) {
    auto options = probe_options_;
    options.http_host = plan.host;
    const auto probed = co_await net::probe({*result.address, plan.port}, options);
    result.probe = probed.outcome;
    result.probe_latency = probed.latency;
    metrics_.probe_finished(probed.outcome, probed.latency);
  }
  co_return result;
}

}  // namespace director::server
