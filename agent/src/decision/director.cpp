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

// Whether a feed's word on a label makes it covered.
bool covering(const ContainerState* state) noexcept {
  return state != nullptr && state->running && !state->unhealthy;
}

bool same_state(const ContainerState* before, const ContainerState* after) noexcept {
  if (before == nullptr || after == nullptr) return before == after;
  return *before == *after;
}

Duration at_least_zero(Duration duration) noexcept { return std::max(duration, Duration::zero()); }

Answer refusal(Reason reason) {
  Answer answer;
  answer.alive = false;
  answer.reason = reason;
  return answer;
}

}  // namespace

ContainerId::ContainerId(std::string_view text) noexcept {
  if (text.empty()) return;
  hash_ = std::hash<std::string_view>{}(text);
  if (hash_ == 0) hash_ = 1;
}

bool is_haproxy_key(std::string_view name) noexcept {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '@' || c == '+' || c == '-';
  });
}

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

Duration Settings::event_refresh_after(std::string_view label) const noexcept {
  // FNV-1a (64 bits) and MurmurHash3's finalizer (FNV's top bits alone hardly differ between
  // "user1" and "user2"): the same on every run and platform. The top 12 bits pick one of 4096
  // steps over the last eighth of event_alive_ttl's first three quarters.
  std::uint64_t hash = 14695981039346656037ULL;
  for (const char c : label) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ULL;
  }
  hash ^= hash >> 33;
  hash *= 0xff51afd7ed558ccdULL;
  hash ^= hash >> 33;
  hash *= 0xc4ceb9fe1a85ec53ULL;
  hash ^= hash >> 33;
  constexpr std::int64_t steps = 4096;
  const auto step = static_cast<std::int64_t>(hash >> 52);
  return latest_event_refresh() - event_alive_ttl / 8 * step / steps;
}

Director::Director(Settings settings) : settings_(std::move(settings)) {}

DecideResult Director::decide(std::optional<std::string_view> username, WaiterId waiter,
                              TimePoint now, bool retry) {
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
    fresh.covered = covered_by_feed(kNoFeed, fresh.label);
    fresh.event_refresh_after = settings_.event_refresh_after(fresh.label);
    entries_.push_front(std::move(fresh));
    found = index_.emplace(entries_.front().label, entries_.begin()).first;
  } else {
    entries_.splice(entries_.begin(), entries_, found->second);
  }
  Entry& entry = *found->second;
  entry.last_seen = now;
  remember_username(entry, *username);

  DecideResult decision;
  if (entry.checked_at && !entry.invalidated) {
    const Duration age = now - *entry.checked_at;
    const bool events = under_event_ttl(entry);
    const Duration ttl = !entry.alive ? settings_.dead_ttl : events ? settings_.event_alive_ttl : settings_.alive_ttl;
    const bool fresh = age < ttl;
    const bool retry_honoured = fresh && retry && (entry.checking || age >= settings_.retry_interval);
    if (fresh && !retry_honoured) {
      ++stats_.hits;
      const Duration refresh_after = events ? entry.event_refresh_after : settings_.refresh_after;
      if (entry.alive && age >= refresh_after && !entry.checking) {
        decision.start_check = plan_for(entry, now);
      }
      decision.answer = answer_for(entry, std::move(label), age);
      return decision;
    }
    if (retry_honoured) ++stats_.retries;
  }

  ++stats_.misses;
  entry.waiters.push_back(waiter);
  if (!entry.checking) {
    decision.start_check = plan_for(entry, now);
  }
  evict_beyond_capacity(now);  // `entry` is checking, hence pinned
  return decision;
}

Completion Director::complete(std::string_view label, const CheckResult& result, TimePoint now) {
  Completion completion = record_check(label, result, now);
  if (!evicted_keys_.empty()) {
    completion.haproxy_keys.insert(completion.haproxy_keys.end(), std::make_move_iterator(evicted_keys_.begin()),
                                   std::make_move_iterator(evicted_keys_.end()));
    evicted_keys_.clear();
  }
  return completion;
}

Completion Director::record_check(std::string_view label, const CheckResult& result, TimePoint now) {
  const Outcome outcome = classify(result);
  // Every probe of a last known address counts, whatever its outcome (docs/metrics.md).
  if (result.dns == DnsOutcome::error && result.probe != ProbeOutcome::not_run) {
    ++stats_.stale_dns;
  }

  Completion completion;
  const auto found = index_.find(label);
  // A check that overlapped a feed change of its label is not trusted: it is repeated, and its
  // waiters wait for the repeat, up to kMaxRepeatedChecks times in a row (then it answers them).
  const bool overlapped = found != index_.end() && found->second->checking &&
                          found->second->planned_generation != found->second->generation &&
                          found->second->repeated_checks < kMaxRepeatedChecks;
  if (found == index_.end() || overlapped) {
    completion.answer.alive = outcome.alive;
    completion.answer.reason = outcome.reason;
    completion.answer.label = label;
    completion.answer.host = host_for(label);
    if (result.dns != DnsOutcome::no_such_host) {
      completion.answer.address = result.address;
    }
    completion.answer.port = outcome.alive ? settings_.container_port : std::uint16_t{0};
    if (overlapped) {
      ++stats_.rechecks;
      ++found->second->repeated_checks;
      completion.start_check = plan_for(*found->second, now);
    }
    return completion;
  }

  Entry& entry = *found->second;
  if (entry.checked_at) {
    completion.previous_reason = entry.reason;
  }
  completion.alive_changed = !entry.checked_at || entry.alive != outcome.alive;
  if (entry.checked_at && entry.alive && !outcome.alive) {
    append_haproxy_keys(entry, completion.haproxy_keys);  // other HAProxy processes may hold it
  }

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
  entry.checked_generation = entry.checking ? entry.planned_generation : entry.generation;
  entry.checking = false;
  entry.invalidated = false;
  entry.repeated_checks = 0;

  completion.waiters = std::move(entry.waiters);
  entry.waiters.clear();
  completion.answer = answer_for(entry, entry.label, Duration::zero());
  evict_beyond_capacity(now);  // may drop `entry`, which is no longer pinned
  return completion;
}

void Director::remember_username(Entry& entry, std::string_view username) {
  // The label is always a key; a name HAProxy's fast path does not store needs no clearing.
  if (username == entry.label || !is_haproxy_key(username)) return;
  if (!entry.usernames) entry.usernames = std::make_unique<std::string>();
  const std::string_view kept_names = *entry.usernames;
  std::size_t kept = 0;
  for (std::size_t start = 0; start < kept_names.size(); ++kept) {
    const std::size_t end = kept_names.find('\n', start);
    if (kept_names.substr(start, end - start) == username) return;
    start = end + 1;
  }
  if (kept >= kMaxUsernames) {
    entry.untracked_username = true;  // HAProxy may hold an answer for it that nobody clears
    return;
  }
  entry.usernames->append(username);
  entry.usernames->push_back('\n');
}

void Director::append_haproxy_keys(const Entry& entry, std::vector<std::string>& keys) {
  if (is_haproxy_key(entry.label)) keys.push_back(entry.label);
  append_usernames(entry, keys);
}

void Director::append_usernames(const Entry& entry, std::vector<std::string>& keys) {
  if (!entry.usernames) return;
  const std::string_view kept_names = *entry.usernames;
  for (std::size_t start = 0; start < kept_names.size();) {
    const std::size_t end = kept_names.find('\n', start);
    keys.emplace_back(kept_names.substr(start, end - start));
    start = end + 1;
  }
}

// Alive, covered, and checked after the feeds last changed their word on the label.
bool Director::under_event_ttl(const Entry& entry) noexcept {
  return entry.checked_at && entry.alive && entry.covered && !entry.invalidated &&
         entry.checked_generation == entry.generation;
}

// How long HAProxy may reuse the entry's answer of this age: long only when it can be told to
// forget it (every runtime socket reachable, every username it may store known), and never
// beyond max_hold.
Duration Director::hold_for(const Entry& entry, Duration age) const noexcept {
  if (!entry.alive) return Duration::zero();
  const bool long_hold = haproxy_invalidation_ && !entry.untracked_username && under_event_ttl(entry);
  return std::min(at_least_zero((long_hold ? entry.event_refresh_after : settings_.fast_path_hold) - age),
                  max_hold);
}

Director::Feed& Director::feed_at(FeedId feed) {
  if (feed >= feeds_.size()) feeds_.resize(static_cast<std::size_t>(feed) + 1);
  return feeds_[feed];
}

bool Director::covered_by_feed(FeedId except, std::string_view label) const {
  for (FeedId feed = 0; feed < feeds_.size(); ++feed) {
    if (feed == except) continue;
    const auto& containers = feeds_[feed].containers;
    const auto found = containers.find(label);
    if (found != containers.end() && covering(&found->second)) return true;
  }
  return false;
}

void Director::apply_feed_change(FeedId feed, std::string_view label, std::string_view username,
                                 const ContainerState* before, const ContainerState* after, ChangeSource source,
                                 Invalidation& out, TimePoint now) {
  const bool lost = source == ChangeSource::lost;
  if (same_state(before, after)) return;
  const bool was_covering = covering(before);
  if (lost && !was_covering) return;  // the feed never vouched for it: nothing to take back
  const bool is_covering = covering(after);
  std::optional<bool> covered;  // the label's new coverage, when this change may alter it
  if (was_covering != is_covering) {
    const bool elsewhere = covered_by_feed(feed, label);
    if (!elsewhere) {
      if (is_covering) {
        ++covered_labels_;
      } else {
        --covered_labels_;
      }
    }
    covered = is_covering || elsewhere;
  }
  if (lost) {
    // The feed is gone, not the container: what it vouched for falls back to the TTLs (the age
    // of the entry's last check decides), and feed_lost clears HAProxy's tables whole. No probe
    // is started: a spawner restart must not probe every cached user at once.
    if (const auto found = index_.find(label); found != index_.end() && covered) {
      found->second->covered = *covered;
    }
    return;
  }
  // A first sighting as running only confirms what checks find: no burst of probes.
  const bool invalidates = before != nullptr || !is_covering;

  const auto found = index_.find(label);
  Entry* entry = found == index_.end() ? nullptr : &*found->second;
  if (entry) {
    ++entry->generation;
    if (covered) entry->covered = *covered;
  }
  if (!invalidates) return;
  if (entry) {
    ++stats_.invalidations;
    entry->invalidated = true;
    append_haproxy_keys(*entry, out.haproxy_keys);
    if (!entry->checking) out.checks.push_back(plan_for(*entry, now));
  } else if (is_haproxy_key(label)) {
    // Not cached here, but HAProxy may hold the label (strict mode: the username is the label)
    // from another agent or from before this agent started.
    out.haproxy_keys.emplace_back(label);
  }
  // The user the container was created for: another agent may have answered them under it.
  if (username != label && is_haproxy_key(username) &&
      std::find(out.haproxy_keys.begin(), out.haproxy_keys.end(), username) == out.haproxy_keys.end()) {
    out.haproxy_keys.emplace_back(username);
  }
  // A snapshot names no username: what the feed vouched for may be held under one nobody here knows.
  if (source == ChangeSource::snapshot && was_covering) out.clear_all = true;
}

Invalidation Director::feed_snapshot(FeedId feed, std::vector<std::pair<std::string, ContainerState>> containers,
                                     TimePoint now) {
  Feed& view = feed_at(feed);
  decltype(Feed::containers) next;
  next.reserve(containers.size());
  for (auto& [label, state] : containers) next.insert_or_assign(std::move(label), std::move(state));

  Invalidation out;
  for (const auto& [label, before] : view.containers) {
    if (!next.contains(label)) apply_feed_change(feed, label, {}, &before, nullptr, ChangeSource::snapshot, out, now);
  }
  for (const auto& [label, after] : next) {
    const auto before = view.containers.find(label);
    apply_feed_change(feed, label, {}, before == view.containers.end() ? nullptr : &before->second, &after,
                      ChangeSource::snapshot, out, now);
  }
  view.containers = std::move(next);
  view.connected = true;
  return out;
}

Invalidation Director::feed_event(FeedId feed, std::string_view label, std::string_view username,
                                  std::optional<ContainerState> state, TimePoint now) {
  Feed& view = feed_at(feed);
  view.connected = true;  // a message is news from a live connection
  Invalidation out;
  const auto before = view.containers.find(label);
  apply_feed_change(feed, label, username, before == view.containers.end() ? nullptr : &before->second,
                    state ? &*state : nullptr, ChangeSource::event, out, now);
  if (state) {
    if (before == view.containers.end()) {
      view.containers.emplace(std::string(label), std::move(*state));
    } else {
      before->second = std::move(*state);
    }
  } else if (before != view.containers.end()) {
    view.containers.erase(before);
  }
  return out;
}

Invalidation Director::feed_lost(FeedId feed, TimePoint now) {
  Invalidation out;
  if (feed >= feeds_.size() || !feeds_[feed].connected) return out;
  Feed& view = feeds_[feed];
  // HAProxy may hold long answers granted while this feed vouched for them.
  out.clear_all = true;
  for (const auto& [label, before] : view.containers) {
    apply_feed_change(feed, label, {}, &before, nullptr, ChangeSource::lost, out, now);
  }
  view.containers.clear();
  view.connected = false;
  return out;
}

void Director::set_haproxy_invalidation(bool available) noexcept { haproxy_invalidation_ = available; }

std::size_t Director::covered_labels() const noexcept { return covered_labels_; }

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

std::optional<Duration> Director::hold_at(std::string_view label, TimePoint now) const {
  const auto found = index_.find(label);
  if (found == index_.end()) return std::nullopt;
  const Entry& entry = *found->second;
  if (!entry.checked_at) return Duration::zero();
  return hold_for(entry, now - *entry.checked_at);
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
  answer.hold = hold_for(entry, age);
  return answer;
}

// Marks the check as in flight and describes it. The fallback is offered only when the user was
// last known alive at an address that DNS returned less than stale_if_error ago.
CheckPlan Director::plan_for(Entry& entry, TimePoint now) {
  entry.checking = true;
  ++stats_.checks_started;
  entry.planned_generation = entry.generation;
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
  view.event_covered = under_event_ttl(entry);
  return view;
}

// Drops least recently used entries without a check in flight until the bound holds (or only
// pinned entries remain).
void Director::evict_beyond_capacity(TimePoint now) {
  const Duration longest_hold = std::min(std::max(settings_.latest_event_refresh(), settings_.fast_path_hold), max_hold);
  auto candidate = entries_.end();
  while (entries_.size() > settings_.capacity && candidate != entries_.begin()) {
    --candidate;
    if (candidate->checking) {
      continue;
    }
    // HAProxy may hold its last answer up to the longest hold past its last request. The label
    // stays reachable (a feed change of an uncached label clears it); other names do not.
    if (now - candidate->last_seen < longest_hold) append_usernames(*candidate, evicted_keys_);
    index_.erase(candidate->label);
    candidate = entries_.erase(candidate);
    ++stats_.evictions;
  }
}

}  // namespace director::decision
