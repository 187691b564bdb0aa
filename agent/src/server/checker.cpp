#include "server/checker.hpp"

#include "server/log.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include <string>
#include <vector>

namespace director::server {

Checker::Checker(boost::asio::any_io_executor executor, const config::Config& config, Resolver& resolver)
    : executor_(std::move(executor)), resolver_(resolver), director_(config.decision) {
  probe_options_.timeout = config.probe.timeout;
  if (config.probe.mode == config::ProbeMode::http) probe_options_.http_path = config.probe.http_path;
}

decision::Stats Checker::stats() const {
  const std::lock_guard lock(mutex_);
  return director_.stats();
}

namespace {

// One line per change of a user's state: never per request.
void log_change(const decision::CheckPlan& plan, const decision::Completion& completion) {
  const auto& answer = completion.answer;
  std::string line = "user " + plan.label + " (" + plan.host + ") ";
  if (answer.alive) {
    line += "became alive at " + answer.address->to_string();
  } else {
    line += "is not alive: " + std::string(to_string(answer.reason));
  }
  if (completion.previous_reason) line += " (was " + std::string(to_string(*completion.previous_reason)) + ")";
  log(config::LogLevel::info, line);
}

}  // namespace

void Checker::start(decision::CheckPlan plan) {
  boost::asio::co_spawn(executor_, run(std::move(plan)), boost::asio::detached);
}

boost::asio::awaitable<void> Checker::run(decision::CheckPlan plan) {
  decision::CheckResult result;
  const auto resolved = co_await resolver_.resolve(plan.host);
  result.dns = resolved.outcome;
  if (resolved.outcome == decision::DnsOutcome::ok && !resolved.addresses.empty()) {
    result.address = resolved.addresses.front();
  } else if (resolved.outcome == decision::DnsOutcome::error) {
    result.address = plan.fallback;
  }
  if (result.address) {
    auto options = probe_options_;
    options.http_host = plan.host;
    const auto probed = co_await probe({*result.address, plan.port}, options);
    result.probe = probed.outcome;
    result.probe_latency = probed.latency;
  }

  decision::Completion completion;
  std::vector<Deliver> deliveries;
  {
    const std::lock_guard lock(mutex_);
    completion = director_.complete(plan.label, result, decision::Clock::now());
    deliveries.reserve(completion.waiters.size());
    for (const auto waiter : completion.waiters) {
      const auto found = waiting_.find(waiter);
      if (found == waiting_.end()) continue;
      deliveries.push_back(std::move(found->second));
      waiting_.erase(found);
    }
  }
  if (completion.alive_changed || completion.previous_reason != completion.answer.reason) {
    log_change(plan, completion);
  }
  for (auto& deliver : deliveries) deliver(completion.answer);
}

}  // namespace director::server
