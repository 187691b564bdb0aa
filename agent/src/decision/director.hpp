// The routing decision, a pure core: a function of the request, the clock, the cache and what the
// event feeds said. No I/O: DNS lookups and liveness probes are described by CheckPlan and run by
// agent/src/server, which reports back with CheckResult; feed messages come in through feed_*()
// and what HAProxy must forget goes out as Invalidation / Completion::haproxy_keys.
// Not thread-safe: the caller serializes access.
//
// Two modes per entry (docs/architecture.md): an alive entry whose label some connected feed says
// is running and not unhealthy, checked after the feed last changed its mind about the label, is
// kept Settings::event_alive_ttl ("event TTL"); every other entry keeps the short TTLs below
// ("TTL mode"). Any feed change of a label invalidates it, except a first sighting as running and
// a lost feed (its labels fall back to the TTLs).
#pragma once

#include "decision/username.hpp"
#include "net/probe_types.hpp"

#include <boost/asio/ip/address.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace director::decision {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using Duration = Clock::duration;
using Address = boost::asio::ip::address;

// Why a request is routed where it is. Stable tokens (to_string) are part of the HAProxy
// contract: haproxy/ matches on them and operators read them in logs.
enum class Reason : std::uint8_t {
  ok,                // container resolved and answered the probe
  missing_username,  // no username argument (NULL) or an empty one
  invalid_username,  // the username cannot be mapped to a DNS label under the configured scheme
  no_such_host,      // DNS answered that the container host does not exist
  dns_error,         // DNS failed (timeout, server failure) and no earlier address is known
  refused,           // the probe's connection was refused
  timeout,           // the probe did not connect (or answer) within the probe timeout
  probe_failed,      // the probe connected but the HTTP check (if configured) failed
};
std::string_view to_string(Reason reason) noexcept;

// Whether `name` may be a key of HAProxy's fast_path table: ^[A-Za-z0-9._@+-]{1,64}$, the names
// haproxy.cfg's fast path stores. Keys go into HAProxy CLI commands: nothing else ever may.
bool is_haproxy_key(std::string_view name) noexcept;

struct Settings {
  std::string host_prefix = "vscode";   // CONTAINER_HOST_PREFIX
  std::string domain_suffix;            // optional, e.g. "users.svc.cluster.local" (no dot first)
  std::uint16_t container_port = 8080;  // CONTAINER_PORT
  UsernameMode username_mode = UsernameMode::escape;
  // An alive answer is served without a new check for `alive_ttl`; after `refresh_after` a
  // request still gets the cached answer but starts a background check. A not-alive answer is
  // served for `dead_ttl`. These bound convergence: started -> routed within dead_ttl + check
  // time, stopped -> abandoned within alive_ttl.
  Duration alive_ttl = std::chrono::milliseconds(800);
  Duration refresh_after = std::chrono::milliseconds(300);
  Duration dead_ttl = std::chrono::milliseconds(500);
  // When DNS fails, a user last known alive is probed at its last address, but only within
  // this long of DNS last returning that address (0: never). Bounds how long an address the
  // runtime may have given to another user's container meanwhile is trusted.
  Duration stale_if_error = std::chrono::seconds(60);
  std::size_t capacity = 100'000;  // users kept; least recently used evicted beyond this
  // Event TTL (DIRECTOR_EVENT_BACKSTOP): how long an alive answer confirmed by a connected feed
  // is kept; a background re-check starts from event_refresh_after(label).
  Duration event_alive_ttl = std::chrono::seconds(60);
  // DIRECTOR_FAST_PATH_HOLD: how long HAProxy may reuse an alive answer it cannot be told to
  // forget (TTL mode, or no invalidation channel). <= alive_ttl; 0: HAProxy never reuses.
  Duration fast_path_hold = std::chrono::milliseconds(500);
  // A retry request forces a fresh check unless one completed less than this long ago.
  Duration retry_interval = std::chrono::milliseconds(250);

  // Where the background re-check of `label`'s answer under the event TTL starts, and its
  // hold in HAProxy ends: from 5/8 to 3/4 of event_alive_ttl, always the same point for a label
  // (a hash of it spreads labels evenly), so that users checked together (an agent restart, a
  // feed's re-list) are not all re-checked, and all sent to the agent, in the same moment.
  Duration event_refresh_after(std::string_view label) const noexcept;
  // The latest of those points (3/4 of event_alive_ttl): the longest hold under the event TTL.
  Duration latest_event_refresh() const noexcept { return event_alive_ttl * 3 / 4; }
};

// The longest hold an answer carries: haproxy.cfg reuses an answer at most 2 minutes ahead
// (its fast path's freshness test, 1..120000 ms, and the fast_path table's expire), so a longer
// hold (DIRECTOR_EVENT_BACKSTOP above 160 s) would make HAProxy ask on every request instead.
inline constexpr Duration max_hold = std::chrono::minutes(2);

// The answer to one request, ready to become SPOP variables.
struct Answer {
  bool alive = false;
  Reason reason = Reason::ok;
  std::string label;               // empty when the username was not mappable
  std::string host;                // computed container host, empty when not mappable
  std::optional<Address> address;  // set when alive (and when known but not alive, for logs)
  std::uint16_t port = 0;          // the container port when alive
  Duration age{};                  // since the check it comes from completed (0: just now)
  // How long from now HAProxy may reuse this answer without asking (txn.director.hold); 0 for a
  // not-alive answer.
  Duration hold{};
};

// Work the I/O layer must do for one user: resolve `host` (falling back to `fallback` when DNS
// fails; offered when the user was last known alive and DNS returned that address less than
// Settings::stale_if_error ago), then probe the address on `port`.
struct CheckPlan {
  std::string label;
  std::string host;
  std::uint16_t port = 0;
  std::optional<Address> fallback;
};

// What the server layer's Resolver and probe concluded (common/src/net/probe_types.hpp).
using DnsOutcome = net::DnsOutcome;
using ProbeOutcome = net::ProbeOutcome;

struct CheckResult {
  DnsOutcome dns = DnsOutcome::error;
  std::optional<Address> address;  // the address probed (resolved, or the fallback)
  ProbeOutcome probe = ProbeOutcome::not_run;
  Duration probe_latency{};
};

// Identifies one request waiting for a check; chosen by the caller, opaque here.
using WaiterId = std::uint64_t;

struct DecideResult {
  // Set when the request is answered now. Absent: the waiter was queued and will be released
  // by complete() for this label.
  std::optional<Answer> answer;
  // Set when the caller must start this check now. At most one check per label is in flight
  // however many requests arrive (single flight).
  std::optional<CheckPlan> start_check;
};

struct Completion {
  Answer answer;
  // Every request queued on this check, in arrival order. Empty when the check overlapped a feed
  // change of its label: its result is not trusted, start_check repeats it and the waiters stay
  // queued for the repeat; at most Director::kMaxRepeatedChecks times in a row, after which the
  // check's result is recorded and answers them anyway (under the TTLs: see complete()).
  std::vector<WaiterId> waiters;
  std::optional<CheckPlan> start_check;  // set when the caller must start this check now
  // HAProxy keys to clear in every HAProxy's fast_path table: the label's when it went alive ->
  // not alive, and the usernames of entries the LRU bound dropped while HAProxy may still hold
  // their answers (a feed change could no longer reach those keys).
  std::vector<std::string> haproxy_keys;
  // For logging state changes. previous_reason is the reason of the check before this one,
  // absent for the user's first recorded check. alive_changed is true when alive differs from
  // that check, or on the first one; false (and nothing recorded) when the label is not cached.
  std::optional<Reason> previous_reason;
  bool alive_changed = false;
};

// Counters the core keeps for metrics (monotonic).
struct Stats {
  std::uint64_t hits = 0;         // answered from a fresh cache entry
  std::uint64_t misses = 0;       // had to wait for a check
  std::uint64_t evictions = 0;    // entries dropped by the LRU bound
  std::uint64_t stale_dns = 0;    // DNS failed and the last known address was probed (any outcome)
  std::uint64_t missing_usernames = 0;  // answered missing_username
  std::uint64_t invalid_usernames = 0;  // answered invalid_username
  std::uint64_t checks_started = 0;     // start_check returned (misses and background refreshes)
  std::uint64_t invalidations = 0;      // cached entries invalidated by feed changes
  std::uint64_t retries = 0;            // retry requests that waited for a fresh check
  std::uint64_t rechecks = 0;           // checks repeated because they overlapped a feed change
};

// Identifies an event feed: its index in DIRECTOR_EVENT_FEEDS.
using FeedId = std::uint32_t;

// A container's id (the runtime's: 64 hex digits for Docker and Podman) as the agent keeps it:
// a fixed-size value, since the agent only ever compares ids (is this event about the label's
// current container? did the label get another one?) and holds one per label and feed. Equal
// texts give equal ids; the empty text gives the empty id. Two different texts compare equal
// with a probability of 2^-64 (the ids are the runtime's random ones, not a user's input).
class ContainerId {
 public:
  ContainerId() = default;
  ContainerId(std::string_view text) noexcept;  // NOLINT(google-explicit-constructor): an id is its text
  ContainerId(const std::string& text) noexcept : ContainerId(std::string_view(text)) {}  // NOLINT
  ContainerId(const char* text) noexcept : ContainerId(std::string_view(text)) {}         // NOLINT
  bool empty() const noexcept { return hash_ == 0; }
  friend bool operator==(ContainerId, ContainerId) = default;

 private:
  std::uint64_t hash_ = 0;  // 0: no id; a text's hash is never 0
};

// What a feed says about the container of one label.
struct ContainerState {
  ContainerId id;
  bool running = false;
  bool unhealthy = false;
  friend bool operator==(const ContainerState&, const ContainerState&) = default;
};

// What the I/O layer must do after a feed change.
struct Invalidation {
  std::vector<std::string> haproxy_keys;  // clear these keys in every HAProxy's fast_path table
  std::vector<CheckPlan> checks;          // start these checks now
  bool clear_all = false;                 // clear every HAProxy's whole fast_path table
};

// One cached user, for the status endpoint and logs. The string views point into the Director
// and are valid until its next non-const call.
struct UserView {
  std::string_view label;
  std::string_view host;
  bool alive = false;                     // result of the last completed check
  Reason reason = Reason::ok;             // of the last completed check (meaningless before one)
  std::optional<Address> address;         // the address the last check probed
  std::optional<TimePoint> last_checked;  // absent until the first check completes
  Duration last_probe_latency{};
  TimePoint last_seen{};                  // the last request for this user
  bool checking = false;                  // a check is in flight (the entry cannot be evicted)
  std::size_t waiters = 0;                // requests queued on that check
  bool event_covered = false;             // the entry's answer is under the event TTL now
};

class Director {
 public:
  explicit Director(Settings settings);
  // The cache holds views into its own entries: movable, not copyable.
  Director(const Director&) = delete;
  Director& operator=(const Director&) = delete;
  Director(Director&&) noexcept = default;
  Director& operator=(Director&&) noexcept = default;
  ~Director() = default;

  // Decides for one request. `username` is std::nullopt when HAProxy sent NULL (no header).
  // `retry` (failure feedback: the user's last connection failed) forces a fresh check that the
  // request waits for, unless a check is in flight (the request queues on it) or one completed
  // less than Settings::retry_interval ago (answered as without retry).
  DecideResult decide(std::optional<std::string_view> username, WaiterId waiter, TimePoint now,
                      bool retry = false);

  // Reports the result of a check started by decide(), an Invalidation or a Completion; releases
  // every waiter queued on it, unless the check overlapped a feed change of its label (see
  // Completion). A label that is not cached gets its Answer but nothing is recorded.
  // A label whose feed word flaps faster than a check completes would keep its waiters forever:
  // after kMaxRepeatedChecks repeats in a row, the next overlapped check's result is recorded and
  // answers the waiters; it was planned before the latest feed change, so it is never under the
  // event TTL (the short TTLs apply, and a later request checks again).
  static constexpr std::uint8_t kMaxRepeatedChecks = 3;
  Completion complete(std::string_view label, const CheckResult& result, TimePoint now);

  // Feed messages. A snapshot replaces everything `feed` said (labels it no longer lists are
  // gone) and marks it connected; an event changes one label (std::nullopt: destroyed) and marks
  // it connected too. What a change invalidates, HAProxy must forget under every key it may hold
  // the label's answer under: the label, the usernames this agent answered for it, and the
  // event's `username` (the user the container was created for, which another agent may have
  // answered: an escaped user's key is not the label); a snapshot names no username, so one that
  // takes back what the feed vouched for (a re-list on the same connection; director-spawner ends
  // its streams instead when it misses events) asks for
  // clear_all. A lost feed (disconnected, silent too long) no longer covers anything, and
  // asks for clear_all when it was connected. The entries only it covered fall back to the TTLs
  // (the age of their last check decides); none is probed at once (a spawner restart must not
  // probe every cached user), and none is listed in haproxy_keys (clear_all covers them).
  Invalidation feed_snapshot(FeedId feed, std::vector<std::pair<std::string, ContainerState>> containers,
                             TimePoint now);
  Invalidation feed_event(FeedId feed, std::string_view label, std::string_view username,
                          std::optional<ContainerState> state, TimePoint now);
  Invalidation feed_lost(FeedId feed, TimePoint now);
  // Whether every configured HAProxy runtime socket is reachable: only then may HAProxy hold an
  // answer under the event TTL (longer than fast_path_hold). Initially false.
  void set_haproxy_invalidation(bool available) noexcept;
  // Labels some connected feed says are running and not unhealthy now (for /status, metrics).
  std::size_t covered_labels() const noexcept;

  // Cached users; exceeds settings().capacity only by entries with a check in flight.
  std::size_t size() const noexcept;
  const Stats& stats() const noexcept;
  const Settings& settings() const noexcept;

  // Up to `limit` users starting at `offset`, most recently used first. O(offset + limit).
  std::vector<UserView> users(std::size_t offset, std::size_t limit) const;
  // The cached user with this label, if any.
  std::optional<UserView> find_user(std::string_view label) const;
  // The hold (Answer::hold) an answer from the cached entry of `label` would carry at `now`: 0
  // when its last check found it not alive, or none completed; nullopt when it is not cached.
  std::optional<Duration> hold_at(std::string_view label, TimePoint now) const;

 private:
  struct Entry {
    std::string label;  // the key: index_ holds a view of it
    std::string host;
    // Usernames seen for this label other than the label itself, that HAProxy's fast path may
    // store (HAProxy keys): at most kMaxUsernames, each followed by '\n' (not in the charset).
    // Null until there is one (never in strict mode, where the username is the label).
    std::unique_ptr<std::string> usernames;
    std::optional<TimePoint> checked_at;  // absent until the first check completes
    std::optional<Address> address;
    std::optional<TimePoint> resolved_at;  // when DNS last returned `address`
    Duration probe_latency{};
    // Settings::event_refresh_after(label), computed once: where the label's re-check and
    // long hold end in event mode.
    Duration event_refresh_after{};
    TimePoint last_seen{};
    std::vector<WaiterId> waiters;  // queued on the check in flight, in arrival order
    std::uint32_t generation = 0;          // feed changes of the label seen while cached
    std::uint32_t planned_generation = 0;  // generation when the check in flight was planned
    std::uint32_t checked_generation = 0;  // generation when the last completed check was planned
    // The small fields last, together (no padding between them).
    bool alive = false;
    Reason reason = Reason::ok;
    bool checking = false;          // a check is in flight: pinned, not evictable
    bool covered = false;           // cache of covered_by_feed(kNoFeed, label)
    bool invalidated = false;       // a feed change expired the last result: wait for a check
    bool untracked_username = false;  // a username HAProxy may store could not be kept: no long hold
    std::uint8_t repeated_checks = 0;  // overlapped checks repeated in a row for the queued waiters
  };
  using Entries = std::list<Entry>;  // most recently used first

  // At most this many usernames other than the label are kept per entry (Entry::usernames).
  static constexpr std::size_t kMaxUsernames = 4;

  struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view text) const noexcept { return std::hash<std::string_view>{}(text); }
  };
  struct Feed {
    bool connected = false;
    std::unordered_map<std::string, ContainerState, StringHash, std::equal_to<>> containers;  // by label
  };

  Feed& feed_at(FeedId feed);
  // Whether a connected feed other than `except` says `label` is running and not unhealthy
  // (kNoFeed: any feed). O(number of feeds): the per-feed views are the only record of coverage.
  bool covered_by_feed(FeedId except, std::string_view label) const;
  static constexpr FeedId kNoFeed = ~FeedId{0};
  // Where a feed change comes from: a snapshot, an event, or the feed's loss (the feed is gone
  // rather than saying the container is).
  enum class ChangeSource : std::uint8_t { snapshot, event, lost };
  // Records that `feed`'s word on `label` went from `before` to `after` (nullptr: unknown or
  // destroyed), before the feed's view changes; `username`: the event's (empty otherwise).
  void apply_feed_change(FeedId feed, std::string_view label, std::string_view username, const ContainerState* before,
                         const ContainerState* after, ChangeSource source, Invalidation& out, TimePoint now);
  static void remember_username(Entry& entry, std::string_view username);
  static void append_haproxy_keys(const Entry& entry, std::vector<std::string>& keys);  // label + usernames
  static void append_usernames(const Entry& entry, std::vector<std::string>& keys);
  static bool under_event_ttl(const Entry& entry) noexcept;
  Duration hold_for(const Entry& entry, Duration age) const noexcept;
  std::string host_for(std::string_view label) const;
  Answer answer_for(const Entry& entry, std::string label, Duration age) const;
  CheckPlan plan_for(Entry& entry, TimePoint now);
  static UserView view_of(const Entry& entry);
  Completion record_check(std::string_view label, const CheckResult& result, TimePoint now);
  void evict_beyond_capacity(TimePoint now);

  Settings settings_;
  Entries entries_;
  std::unordered_map<std::string_view, Entries::iterator> index_;  // label -> entry
  Stats stats_;

  std::vector<Feed> feeds_;  // by FeedId; a feed that is not connected knows no label
  std::size_t covered_labels_ = 0;  // labels some connected feed says are running && !unhealthy
  bool haproxy_invalidation_ = false;
  // Usernames of evicted entries that HAProxy may hold: cleared with the next Completion.
  std::vector<std::string> evicted_keys_;
};

}  // namespace director::decision
