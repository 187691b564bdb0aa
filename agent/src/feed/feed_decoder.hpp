// The agent's side of the spawner's event feed (docs/spawner.md "The event feed"), pure: no I/O.
//
// FeedDecoder turns the bytes of one feed connection (NDJSON, split anywhere) into messages;
// FeedState keeps what one feed said about each label and turns messages into the container
// states the decision core takes (decision::Director::feed_snapshot / feed_event).
//
// The split: the decoder is stateless per line, so a `health` line (which says nothing about
// running-ness) stays an Event of kind health; FeedState, which knows the label's previous
// state, combines it. EventFeed (agent/src/server/event_feed.hpp) keeps one FeedState per feed.
//
// Mapping (plan.md "The feed"): state "running" = running; health "unhealthy" = unhealthy
// (anything else, or absent, not unhealthy); `started` => running; `created`, `stopped`, `died`
// => not running; `health` => running-ness as known (not running for a label not known), sets
// unhealthy from its health; `destroyed` => the label's container is gone (nullopt).
#pragma once

#include "decision/director.hpp"

#include <boost/system/result.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

namespace director::feed {

// What a feed says about a label's container: the decision core's (id, running, unhealthy).
using ContainerState = decision::ContainerState;
// A container's id as the agent keeps it: fixed-size, compared only (decision/director.hpp).
using ContainerId = decision::ContainerId;

// Labels and their containers as a snapshot lists them (in the feed's order; a label may come
// more than once: FeedState::apply resolves that).
using Containers = std::vector<std::pair<std::string, ContainerState>>;

// {"type":"snapshot","containers":[{"label","id","state","health"}, ...]}
struct Snapshot {
  Containers containers;
  friend bool operator==(const Snapshot&, const Snapshot&) = default;
};

enum class EventKind : std::uint8_t { created, started, stopped, died, health, destroyed };
std::string_view to_string(EventKind kind) noexcept;

// {"type":"<kind>","label":"...","id":"...", "username":"..." (optional), "health":"..." (health only)}
struct Event {
  EventKind kind = EventKind::created;
  std::string label;      // never empty
  ContainerId id;         // empty when the line has none
  bool unhealthy = false;  // health events: health == "unhealthy"; false for every other kind
  std::string username;   // the user the container was created for; empty when the line has none
  friend bool operator==(const Event&, const Event&) = default;
};

// {"type":"heartbeat"}
struct Heartbeat {
  friend bool operator==(const Heartbeat&, const Heartbeat&) = default;
};

using FeedMessage = std::variant<Snapshot, Event, Heartbeat>;

// Why a feed's bytes cannot be decoded; the connection is not to be trusted after one.
struct FeedError {
  std::string message;  // for logs and /status, e.g. "line 3 is not JSON: ..."
};

class FeedDecoder {
 public:
  static constexpr std::size_t default_max_line = 64 * 1024 * 1024;

  // `max_line`: the longest line accepted (without its '\n'); a longer one is an error as soon
  // as that many bytes arrived without a newline (memory stays bounded by it).
  explicit FeedDecoder(std::size_t max_line = default_max_line);

  // Decodes every line `bytes` completes, in order; a partial line waits for the next call.
  // Empty lines (and a '\r' before the '\n') are skipped, lines of an unknown type ignored. An
  // error is final: every later call returns it again (the caller drops the connection and
  // starts a new decoder with the next one).
  boost::system::result<std::vector<FeedMessage>, FeedError> decode(std::string_view bytes);

  // Complete lines seen so far, skipped and ignored ones included (for a heartbeat timeout).
  std::uint64_t lines() const noexcept { return lines_; }

 private:
  std::size_t max_line_;
  std::string partial_;  // the bytes of the line not yet complete
  std::uint64_t lines_ = 0;
  std::optional<FeedError> failed_;
};

// One line, without its '\n' (and without a '\r' before it): a message, nothing (empty line,
// unknown type), or why it is not a feed line. The decoder's per-line step.
boost::system::result<std::optional<FeedMessage>, FeedError> decode_line(std::string_view line);

// What one feed said about each label: the per-feed map behind the mapping above.
class FeedState {
 public:
  // A label's new state after `event`: nullopt (outer) when the event changes nothing (the
  // state known already: Podman sends a health event on every check; a `destroyed` of a label
  // not known, or of a container other than the label's current one); else the new state,
  // nullopt (inner) meaning the label's container is gone.
  struct Change {
    std::string label;
    std::optional<ContainerState> state;
  };

  // Replaces everything known with `snapshot` and returns it with one entry per label (a label
  // listed twice: a running container wins over one that is not, else the last listed).
  Containers apply(const Snapshot& snapshot);
  std::optional<Change> apply(const Event& event);
  // The feed was lost: nothing is known any more.
  void clear() noexcept { labels_.clear(); }

  std::size_t labels() const noexcept { return labels_.size(); }
  const ContainerState* find(std::string_view label) const;

 private:
  std::unordered_map<std::string, ContainerState> labels_;
};

}  // namespace director::feed
