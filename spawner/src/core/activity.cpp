#include "core/activity.hpp"

#include "net/show_table.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <stdexcept>

namespace director::spawner::core {

namespace {

// Nesting depth of a JSON text, strings skipped; stops counting past `limit`.
bool nested_deeper_than(std::string_view json, int limit) {
  int depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

// An agent's answer as a JSON object: nested at most 32 deep (nlohmann recurses), else why not.
boost::system::result<nlohmann::json, ParseError> parse_object(std::string_view json) {
  if (nested_deeper_than(json, 32)) return ParseError{"nested too deeply"};
  auto body = nlohmann::json::parse(json, nullptr, false);
  if (body.is_discarded()) return ParseError{"not JSON"};
  if (!body.is_object()) return ParseError{"not a JSON object"};
  return boost::system::result<nlohmann::json, ParseError>(boost::system::in_place_value, std::move(body));
}

}  // namespace

void throw_exception_from_error(const ParseError& error, const boost::source_location&) {
  throw std::runtime_error(error.message);
}

boost::system::result<AgentUsersPage, ParseError> parse_agent_users(std::string_view json, TimePoint now) {
  auto parsed = parse_object(json);
  if (!parsed) return parsed.error();
  const auto& body = *parsed;
  const auto total = body.find("total");
  const auto offset = body.find("offset");
  const auto users = body.find("users");
  if (total == body.end() || !total->is_number_unsigned()) return ParseError{"no total"};
  if (offset == body.end() || !offset->is_number_unsigned()) return ParseError{"no offset"};
  if (users == body.end() || !users->is_array()) return ParseError{"no users"};
  AgentUsersPage page;
  page.total = total->get<std::uint64_t>();
  page.offset = offset->get<std::uint64_t>();
  page.rows = users->size();
  // An agent's label is a DNS label of at most 63 characters; an age over ten years is nonsense.
  constexpr std::size_t max_label = 63;
  constexpr double max_age_seconds = 10.0 * 365 * 24 * 3600;
  for (const auto& row : *users) {
    const auto label = row.is_object() ? row.find("label") : row.end();
    const auto age = row.is_object() ? row.find("last_seen_seconds_ago") : row.end();
    if (!row.is_object() || label == row.end() || !label->is_string() || age == row.end() || !age->is_number()) {
      ++page.skipped_rows;
      continue;
    }
    const auto& name = label->get_ref<const std::string&>();
    const double seconds = age->get<double>();
    if (name.empty() || name.size() > max_label || !std::isfinite(seconds) || seconds < 0 ||
        seconds > max_age_seconds) {
      ++page.skipped_rows;
      continue;
    }
    const auto seen = now - std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    auto [at, inserted] = page.last_request.try_emplace(name, seen);
    if (!inserted && seen > at->second) at->second = seen;
  }
  return page;
}

boost::system::result<AgentConnectionsPage, ParseError> parse_agent_connections(std::string_view json) {
  auto parsed = parse_object(json);
  if (!parsed) return parsed.error();
  const auto& body = *parsed;
  const auto sockets = body.find("sockets");
  const auto connections = body.find("connections");
  const auto next = body.find("next");
  if (sockets == body.end() || !sockets->is_array()) return ParseError{"no sockets"};
  if (connections == body.end() || !connections->is_array()) return ParseError{"no connections"};
  if (next == body.end() || !(next->is_null() || next->is_string())) return ParseError{"no next"};
  AgentConnectionsPage page;
  page.sockets = sockets->size();
  for (const auto& row : *connections) {
    // Matched on "key" (the table key's bytes in hex), never on "user": a key cut at 64 bytes
    // inside a UTF-8 character reaches JSON text only with a replacement character.
    const auto key = row.is_object() ? row.find("key") : row.end();
    const auto open = row.is_object() ? row.find("open") : row.end();
    if (!row.is_object() || key == row.end() || !key->is_string() || open == row.end() ||
        !open->is_number_unsigned()) {
      return ParseError{"a connections row without a string key and an unsigned open"};
    }
    const auto& hex = key->get_ref<const std::string&>();
    auto username = hex.size() <= net::max_key_hex ? net::key_from_hex(hex) : std::nullopt;
    if (!username) return ParseError{"a connections row whose key is not hex digits"};
    auto& sum = page.connections[std::move(*username)];
    const auto count = open->get<std::uint64_t>();
    sum = net::add_counts(sum, count);
  }
  if (next->is_string()) {
    const auto& cursor = next->get_ref<const std::string&>();
    const bool hex = std::all_of(cursor.begin(), cursor.end(), [](char c) {
      return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    });
    if (cursor.empty() || cursor.size() > net::max_key_hex || cursor.size() % 2 != 0 || !hex) {
      return ParseError{"next is not a cursor (hex digits)"};
    }
    page.next = cursor;
  }
  return page;
}

void merge_last_request(std::map<std::string, TimePoint, std::less<>>& into,
                        const std::map<std::string, TimePoint, std::less<>>& from) {
  for (const auto& [label, seen] : from) {
    auto [at, inserted] = into.try_emplace(label, seen);
    if (!inserted && seen > at->second) at->second = seen;
  }
}

void add_connections(std::map<std::string, std::uint64_t, std::less<>>& into,
                     const std::map<std::string, std::uint64_t, std::less<>>& from) {
  for (const auto& [username, count] : from) {
    auto& sum = into[username];
    sum = net::add_counts(sum, count);
  }
}

std::map<std::string, std::uint64_t, std::less<>> open_connections_by_label(
    const std::vector<ContainerStatus>& running,
    const std::map<std::string, std::uint64_t, std::less<>>& by_username, std::size_t key_length) {
  std::map<std::string, std::uint64_t, std::less<>> by_label;
  for (const auto& container : running) {
    if (container.label.empty()) continue;
    const auto key = std::string_view(container.username).substr(0, key_length);
    const auto found = by_username.find(key);
    if (found != by_username.end() && found->second > 0) by_label[container.label] = found->second;
  }
  return by_label;
}

}  // namespace director::spawner::core
