#include "feed/feed_decoder.hpp"

#include <nlohmann/json.hpp>

#include <array>
#include <exception>

namespace director::feed {
namespace {

using Json = nlohmann::json;
using LineResult = boost::system::result<std::optional<FeedMessage>, FeedError>;

LineResult wrong(std::string message) { return LineResult(boost::system::in_place_error, FeedError{std::move(message)}); }

// A member that must be a string when present (null counts as absent): its value, "" when
// absent, nullopt when it has another type.
std::optional<std::string> optional_string(const Json& object, const char* key) {
  const auto found = object.find(key);
  if (found == object.end() || found->is_null()) return std::string();
  if (!found->is_string()) return std::nullopt;
  return found->get<std::string>();
}

// The label of a container or event: a non-empty string.
std::optional<std::string> label_of(const Json& object) {
  const auto found = object.find("label");
  if (found == object.end() || !found->is_string()) return std::nullopt;
  auto label = found->get<std::string>();
  if (label.empty()) return std::nullopt;
  return label;
}

// A snapshot's containers, decoded one row at a time while the line is parsed (SnapshotReader),
// so that the parsed line never holds the rows as JSON: at 100,000 labels that would be about
// 70 MiB for a moment, and the heap keeps what it once held.
struct SnapshotRows {
  Containers containers;
  std::optional<std::string> error;  // the first row that is not a container
  std::size_t rows = 0;
};

// One row of a snapshot's "containers" array: a container, or why it is not one.
void read_row(const Json& row, SnapshotRows& out) {
  const auto where = [&] { return "snapshot container " + std::to_string(out.rows); };
  if (out.error) return;
  if (!row.is_object()) {
    out.error = where() + " is not an object";
    return;
  }
  auto label = label_of(row);
  if (!label) {
    out.error = where() + " has no label (a non-empty string)";
    return;
  }
  const auto id = optional_string(row, "id");
  const auto state = optional_string(row, "state");
  const auto health = optional_string(row, "health");
  if (!id || !state || !health) {
    out.error = where() + " (" + *label + "): id, state and health must be strings";
    return;
  }
  out.containers.emplace_back(std::move(*label), ContainerState{*id, *state == "running", *health == "unhealthy"});
}

// The parser callback that reads the rows of the top-level "containers" array as they complete
// and drops them from the parsed line (which keeps an empty array there). Rows of a later
// "containers" member replace those of an earlier one, as the parsed line keeps the last.
class SnapshotReader {
 public:
  explicit SnapshotReader(SnapshotRows& rows) : rows_(rows) {}

  bool operator()(int depth, Json::parse_event_t event, Json& parsed) {
    using Parse = Json::parse_event_t;
    if (depth == 1) {
      if (event == Parse::key) {
        in_key_ = parsed.is_string() && parsed.get_ref<const std::string&>() == "containers";
      } else if (event == Parse::array_start && in_key_) {
        in_containers_ = true;
        rows_ = SnapshotRows{};
      } else if (event == Parse::array_end) {
        in_containers_ = false;
      }
      return true;
    }
    if (depth != 2 || !in_containers_) return true;
    if (event != Parse::object_end && event != Parse::array_end && event != Parse::value) return true;
    read_row(parsed, rows_);
    ++rows_.rows;
    return false;  // read: not kept in the parsed line
  }

 private:
  SnapshotRows& rows_;
  bool in_key_ = false;        // the depth-1 member being parsed is "containers"
  bool in_containers_ = false;  // inside that member's array
};

LineResult snapshot_of(const Json& line, SnapshotRows& rows) {
  const auto list = line.find("containers");
  if (list == line.end() || !list->is_array()) return wrong("a snapshot without a \"containers\" array");
  if (rows.error) return wrong(std::move(*rows.error));
  return LineResult(boost::system::in_place_value, FeedMessage(Snapshot{std::move(rows.containers)}));
}

constexpr std::array event_kinds{EventKind::created, EventKind::started, EventKind::stopped,
                                 EventKind::died,    EventKind::health,  EventKind::destroyed};

LineResult event_of(EventKind kind, const Json& line) {
  auto label = label_of(line);
  if (!label) return wrong(std::string("a ") + std::string(to_string(kind)) + " event without a label (a non-empty string)");
  const auto not_a_string = [&](std::string_view field) {
    return wrong("a " + std::string(to_string(kind)) + " event for " + *label + " whose " + std::string(field) +
                 " is not a string");
  };
  auto id = optional_string(line, "id");
  if (!id) return not_a_string("id");
  auto username = optional_string(line, "username");
  if (!username) return not_a_string("username");
  bool unhealthy = false;
  if (kind == EventKind::health) {
    const auto health = optional_string(line, "health");
    if (!health) return not_a_string("health");
    unhealthy = *health == "unhealthy";
  }
  return LineResult(boost::system::in_place_value,
                    FeedMessage(Event{kind, std::move(*label), std::move(*id), unhealthy, std::move(*username)}));
}

}  // namespace

std::string_view to_string(EventKind kind) noexcept {
  switch (kind) {
    case EventKind::created: return "created";
    case EventKind::started: return "started";
    case EventKind::stopped: return "stopped";
    case EventKind::died: return "died";
    case EventKind::health: return "health";
    case EventKind::destroyed: return "destroyed";
  }
  return "unknown";
}

LineResult decode_line(std::string_view line) {
  if (line.find_first_not_of(" \t\r") == std::string_view::npos) return std::optional<FeedMessage>();
  try {
    SnapshotRows rows;
    const Json json = Json::parse(line, SnapshotReader(rows), /*allow_exceptions=*/false);
    if (json.is_discarded()) return wrong("not JSON");
    if (!json.is_object()) return wrong("not a JSON object");
    const auto type = json.find("type");
    if (type == json.end() || !type->is_string()) return wrong("no \"type\" (a string)");
    const auto& name = type->get_ref<const std::string&>();
    if (name == "snapshot") return snapshot_of(json, rows);
    if (name == "heartbeat") return std::optional<FeedMessage>(Heartbeat{});
    for (const auto kind : event_kinds) {
      if (name == to_string(kind)) return event_of(kind, json);
    }
    return std::optional<FeedMessage>();  // a type of a later version: ignored
  } catch (const std::exception& error) {  // allocation failures and the like: still a value
    return wrong(std::string("cannot decode: ") + error.what());
  }
}

FeedDecoder::FeedDecoder(std::size_t max_line) : max_line_(max_line) {}

boost::system::result<std::vector<FeedMessage>, FeedError> FeedDecoder::decode(std::string_view bytes) {
  if (failed_) return *failed_;
  std::vector<FeedMessage> messages;
  const auto fail = [&](std::string message) {
    failed_ = FeedError{std::move(message)};
    partial_.clear();
    partial_.shrink_to_fit();
    return *failed_;
  };
  const auto take = [&](std::string_view line) -> std::optional<FeedError> {
    ++lines_;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    auto decoded = decode_line(line);
    if (!decoded) return fail("line " + std::to_string(lines_) + ": " + decoded.error().message);
    if (*decoded) messages.push_back(std::move(**decoded));
    return std::nullopt;
  };
  const auto too_long = [&] {
    return fail("line " + std::to_string(lines_ + 1) + " is longer than " + std::to_string(max_line_) + " bytes");
  };
  while (!bytes.empty()) {
    const auto newline = bytes.find('\n');
    const auto piece = bytes.substr(0, newline);
    if (partial_.size() + piece.size() > max_line_) return too_long();
    if (newline == std::string_view::npos) {
      partial_.append(piece);
      break;
    }
    bytes.remove_prefix(newline + 1);
    if (partial_.empty()) {
      if (auto error = take(piece)) return *error;
    } else {
      partial_.append(piece);
      const std::string line = std::move(partial_);
      partial_.clear();
      if (auto error = take(line)) return *error;
    }
  }
  return messages;
}

Containers FeedState::apply(const Snapshot& snapshot) {
  labels_.clear();
  Containers unique;
  unique.reserve(snapshot.containers.size());
  std::unordered_map<std::string_view, std::size_t> index;  // label -> position in unique
  for (const auto& [label, state] : snapshot.containers) {
    const auto [at, added] = index.try_emplace(label, unique.size());
    if (added) {
      unique.emplace_back(label, state);
      continue;
    }
    auto& kept = unique[at->second].second;
    if (state.running || !kept.running) kept = state;
  }
  for (const auto& [label, state] : unique) labels_.emplace(label, state);
  return unique;
}

std::optional<FeedState::Change> FeedState::apply(const Event& event) {
  const auto known = labels_.find(event.label);
  if (event.kind == EventKind::destroyed) {
    if (known == labels_.end()) return std::nullopt;
    if (!event.id.empty() && !known->second.id.empty() && known->second.id != event.id) return std::nullopt;
    labels_.erase(known);
    return Change{event.label, std::nullopt};
  }
  // A late stop, death or health report of a container the label no longer has (the spawner
  // re-created it) says nothing about the one it has now.
  const bool other_container = known != labels_.end() && !event.id.empty() && !known->second.id.empty() &&
                               known->second.id != event.id;
  if (other_container && event.kind != EventKind::created && event.kind != EventKind::started) return std::nullopt;
  ContainerState state;
  state.id = event.id;
  switch (event.kind) {
    case EventKind::started: state.running = true; break;
    case EventKind::created:
    case EventKind::stopped:
    case EventKind::died: state.running = false; break;
    case EventKind::health:
      state.running = known != labels_.end() && known->second.running;
      if (state.id.empty() && known != labels_.end()) state.id = known->second.id;
      state.unhealthy = event.unhealthy;
      break;
    case EventKind::destroyed: break;  // above
  }
  if (known != labels_.end() && known->second == state) return std::nullopt;  // e.g. Podman's health event of every check
  labels_.insert_or_assign(event.label, state);
  return Change{event.label, std::move(state)};
}

const ContainerState* FeedState::find(std::string_view label) const {
  const auto found = labels_.find(std::string(label));
  return found == labels_.end() ? nullptr : &found->second;
}

}  // namespace director::feed
