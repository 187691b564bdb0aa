#include "core/activity.hpp"

#include <nlohmann/json.hpp>

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <stdexcept>

namespace director::spawner::core {

namespace {

int hex_digit(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// HAProxy's escaped key (up to the first unescaped space); false on a malformed escape.
bool unescape_key(std::string_view& rest, std::string& key) {
  while (!rest.empty() && rest.front() != ' ') {
    char c = rest.front();
    rest.remove_prefix(1);
    if (c == '\\') {
      if (rest.empty()) return false;
      const char escaped = rest.front();
      rest.remove_prefix(1);
      switch (escaped) {
        case ' ': case '=': case '\\': c = escaped; break;
        case 't': c = '\t'; break;
        case 'n': c = '\n'; break;
        case 'r': c = '\r'; break;
        case 'x': {
          if (rest.size() < 2) return false;
          const int high = hex_digit(rest[0]);
          const int low = hex_digit(rest[1]);
          if (high < 0 || low < 0) return false;
          c = static_cast<char>(high * 16 + low);
          rest.remove_prefix(2);
          break;
        }
        default: return false;
      }
    }
    key += c;
  }
  return true;
}

// One entry line: "<pointer>: key=<escaped> field=value ...". nullopt-like false when malformed.
bool parse_entry(std::string_view line, std::string& key, std::uint64_t& conn_cur) {
  const auto colon = line.find(": key=");
  if (colon == std::string_view::npos || colon == 0) return false;
  std::string_view rest = line.substr(colon + 6);
  if (!unescape_key(rest, key)) return false;
  bool found = false;
  while (!rest.empty()) {
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    const auto end = rest.find(' ');
    const auto field = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end);
    if (!field.starts_with("conn_cur=")) continue;
    const auto value = field.substr(9);
    const auto [ptr, error] = std::from_chars(value.data(), value.data() + value.size(), conn_cur);
    if (error != std::errc{} || ptr != value.data() + value.size()) return false;
    found = true;
  }
  return found;
}

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

}  // namespace

ShowTable parse_show_table(std::string_view text) {
  ShowTable table;
  while (!text.empty()) {
    const auto newline = text.find('\n');
    auto line = text.substr(0, newline);
    text = newline == std::string_view::npos ? std::string_view{} : text.substr(newline + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    if (line.front() == '#') {
      if (line.starts_with("# table:")) table.header_seen = true;
      continue;
    }
    std::string key;
    std::uint64_t conn_cur = 0;
    if (table.connections.size() >= max_show_table_entries || !parse_entry(line, key, conn_cur)) {
      ++table.skipped_lines;
      continue;
    }
    // One line per key in a table; a repeated key is summed (saturating).
    auto& sum = table.connections[std::move(key)];
    sum = conn_cur > UINT64_MAX - sum ? UINT64_MAX : sum + conn_cur;
  }
  return table;
}

void throw_exception_from_error(const ParseError& error, const boost::source_location&) {
  throw std::runtime_error(error.message);
}

boost::system::result<AgentUsersPage, ParseError> parse_agent_users(std::string_view json, TimePoint now) {
  if (nested_deeper_than(json, 32)) return ParseError{"nested too deeply"};
  const auto body = nlohmann::json::parse(json, nullptr, false);
  if (body.is_discarded()) return ParseError{"not JSON"};
  if (!body.is_object()) return ParseError{"not a JSON object"};
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

void merge_last_request(std::map<std::string, TimePoint, std::less<>>& into,
                        const std::map<std::string, TimePoint, std::less<>>& from) {
  for (const auto& [label, seen] : from) {
    auto [at, inserted] = into.try_emplace(label, seen);
    if (!inserted && seen > at->second) at->second = seen;
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
