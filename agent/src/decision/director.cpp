#include "decision/director.hpp"

#include <algorithm>
#include <utility>

namespace director::decision {
namespace {

struct Outcome {
  bool alive;
  Reason reason;
};

// What a check found. DNS no_such_host is authoritative: not alive whatever the probe says.
// Alive needs an address, so that an alive answer can always be routed.
Outcome classify(const CheckResult& result) noexcept {
  if (result.dns == DnsOutcome::no_such_host) {
    return {false, Reason::no_such_host};
  }
  if (!result.address) {
    return {false, Reason::dns_error};
  }
  switch (result.probe) {
    case ProbeOutcome::ok:
      return {true, Reason::ok};
    case ProbeOutcome::refused:
      return {false, Reason::refused};
    case ProbeOutcome::timeout:
      return {false, Reason::timeout};
    case ProbeOutcome::failed:
    case ProbeOutcome::not_run:
      return {false, Reason::probe_failed};
  }
  return {false, Reason::probe_failed};
}

Answer refusal(Reason reason) {
  Answer answer;
  answer.alive = false;
  answer.reason = reason;
  return answer;
}

}  // namespace

std::string_view to_string(Reason reason) noexcept {
  switch (reason) {
    case Reason::ok:
      return "ok";
    case Reason::missing_username:
      return "missing-username";
    case Reason::invalid_username:
      return "invalid-username";
    case Reason::no_such_host:
      return "no-such-host";
    case Reason::dns_error:
      return "dns-error";
    case Reason::refused:
      return "refused";
    case Reason::timeout:
      return "timeout";
    case Reason::probe_failed:
      return "probe-failed";
  }
  return "probe-failed";
}

Director::Director(Settings settings) : settings_(std::move(settings)) {}

DecideResult Director::decide(std::optional<std::string_view> username, WaiterId waiter,
                              TimePoint now, bool retry) {
  (void)retry;
  if (!username || username->empty()) {
    ++stats_.missing_usernames;
    return {refusal(Reason::missing_username), std::nullopt};
  }
  auto mapped = map_username(*username, settings_.username_mode, settings_.host_prefix);
  if (!mapped) {
    ++stats_.invalid_usernames;
    return {refusal(Reason::invalid_username), std::nullopt};
  }
  std::string label = std::move(mapped).value();

  auto found = index_.find(std::string_view(label));
  if (found == index_.end()) {
    Entry fresh;
    fresh.label = label;
    fresh.host = host_for(fresh.label);
    entries_.push_front(std::move(fresh));
    found = index_.emplace(entries_.front().label, entries_.begin()).first;
  } else {
    entries_.splice(entries_.begin(), entries_, found->second);
  }
  Entry& entry = *found->second;
  entry.last_seen = now;

  DecideResult decision;
  if (entry.checked_at) {
    const Duration age = now - *entry.checked_at;
    const bool fresh = age < (entry.alive ? settings_.alive_ttl : settings_.dead_ttl);
    if (fresh) {
      ++stats_.hits;
      if (entry.alive && age >= settings_.refresh_after && !entry.checking) {
        decision.start_check = plan_for(entry, now);
      }
      decision.answer = answer_for(entry, std::move(label), age);
      return decision;
    }
  }

  ++stats_.misses;
  entry.waiters.push_back(waiter);
  if (!entry.checking) {
    decision.start_check = plan_for(entry, now);
  }
  evict_beyond_capacity();  // `entry` is checking, hence pinned
  return decision;
}

Completion Director::complete(std::string_view label, const CheckResult& result, TimePoint now) {
  const Outcome outcome = classify(result);
  // Every probe of a last known address counts, whatever its outcome (docs/metrics.md).
  if (result.dns == DnsOutcome::error && result.probe != ProbeOutcome::not_run) {
    ++stats_.stale_dns;
  }

  Completion completion;
  const auto found = index_.find(label);
  if (found == index_.end()) {
    completion.answer.alive = outcome.alive;
    completion.answer.reason = outcome.reason;
    completion.answer.label = label;
    completion.answer.host = host_for(label);
    if (result.dns != DnsOutcome::no_such_host) {
      completion.answer.address = result.address;
    }
    completion.answer.port = outcome.alive ? settings_.container_port : std::uint16_t{0};
    return completion;
  }

  Entry& entry = *found->second;
  if (entry.checked_at) {
    completion.previous_reason = entry.reason;
  }
  completion.alive_changed = !entry.checked_at || entry.alive != outcome.alive;

  entry.checked_at = now;
  entry.alive = outcome.alive;
  entry.reason = outcome.reason;
  entry.address = result.dns == DnsOutcome::no_such_host ? std::nullopt : result.address;
  if (result.dns == DnsOutcome::ok) {
    entry.resolved_at = now;
  } else if (result.dns == DnsOutcome::no_such_host) {
    entry.resolved_at.reset();
  }
  entry.probe_latency = result.probe_latency;
  entry.checking = false;

  completion.waiters = std::move(entry.waiters);
  entry.waiters.clear();
  completion.answer = answer_for(entry, entry.label, Duration::zero());
  evict_beyond_capacity();  // may drop `entry`, which is no longer pinned
  return completion;
}

Invalidation Director::feed_snapshot(FeedId, std::vector<std::pair<std::string, ContainerState>>, TimePoint) {
  return {};
}

Invalidation Director::feed_event(FeedId, std::string_view, std::optional<ContainerState>, TimePoint) {
  return {};
}

Invalidation Director::feed_lost(FeedId, TimePoint) { return {}; }

void Director::set_haproxy_invalidation(bool available) noexcept { haproxy_invalidation_ = available; }

std::size_t Director::covered_labels() const noexcept { return covered_labels_.size(); }

std::size_t Director::size() const noexcept { return entries_.size(); }

const Stats& Director::stats() const noexcept { return stats_; }

const Settings& Director::settings() const noexcept { return settings_; }

std::vector<UserView> Director::users(std::size_t offset, std::size_t limit) const {
  std::vector<UserView> page;
  if (offset >= entries_.size()) {
    return page;
  }
  page.reserve(std::min(limit, entries_.size() - offset));
  auto entry = std::next(entries_.begin(), static_cast<Entries::difference_type>(offset));
  for (; entry != entries_.end() && page.size() < limit; ++entry) {
    page.push_back(view_of(*entry));
  }
  return page;
}

std::optional<UserView> Director::find_user(std::string_view label) const {
  const auto found = index_.find(label);
  if (found == index_.end()) {
    return std::nullopt;
  }
  return view_of(*found->second);
}

std::string Director::host_for(std::string_view label) const {
  std::string host;
  host.reserve(settings_.host_prefix.size() + 1 + label.size() +
               (settings_.domain_suffix.empty() ? 0 : 1 + settings_.domain_suffix.size()));
  host += settings_.host_prefix;
  host += '-';
  host += label;
  if (!settings_.domain_suffix.empty()) {
    host += '.';
    host += settings_.domain_suffix;
  }
  return host;
}

Answer Director::answer_for(const Entry& entry, std::string label, Duration age) const {
  Answer answer;
  answer.alive = entry.alive;
  answer.reason = entry.reason;
  answer.label = std::move(label);
  answer.host = entry.host;
  answer.address = entry.address;
  answer.port = entry.alive ? settings_.container_port : std::uint16_t{0};
  answer.age = age;
  return answer;
}

// Marks the check as in flight and describes it. The fallback is offered only when the user was
// last known alive at an address that DNS returned less than stale_if_error ago.
CheckPlan Director::plan_for(Entry& entry, TimePoint now) {
  entry.checking = true;
  ++stats_.checks_started;
  CheckPlan plan;
  plan.label = entry.label;
  plan.host = entry.host;
  plan.port = settings_.container_port;
  if (entry.checked_at && entry.alive && entry.resolved_at &&
      now - *entry.resolved_at < settings_.stale_if_error) {
    plan.fallback = entry.address;
  }
  return plan;
}

UserView Director::view_of(const Entry& entry) {
  UserView view;
  view.label = entry.label;
  view.host = entry.host;
  view.alive = entry.alive;
  view.reason = entry.reason;
  view.address = entry.address;
  view.last_checked = entry.checked_at;
  view.last_probe_latency = entry.probe_latency;
  view.last_seen = entry.last_seen;
  view.checking = entry.checking;
  view.waiters = entry.waiters.size();
  return view;
}

// Drops least recently used entries without a check in flight until the bound holds (or only
// pinned entries remain).
void Director::evict_beyond_capacity() {
  auto candidate = entries_.end();
  while (entries_.size() > settings_.capacity && candidate != entries_.begin()) {
    --candidate;
    if (candidate->checking) {
      continue;
    }
    index_.erase(candidate->label);
    candidate = entries_.erase(candidate);
    ++stats_.evictions;
  }
}

}  // namespace director::decision
