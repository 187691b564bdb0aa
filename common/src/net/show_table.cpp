#include "net/show_table.hpp"

#include <charconv>
#include <cstdint>

namespace director::net {

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
    sum = add_counts(sum, conn_cur);
  }
  return table;
}

std::string key_to_hex(std::string_view key) {
  constexpr std::string_view digits = "0123456789abcdef";
  std::string hex;
  hex.reserve(key.size() * 2);
  for (const char c : key) {
    hex += digits[static_cast<unsigned char>(c) >> 4];
    hex += digits[static_cast<unsigned char>(c) & 0xf];
  }
  return hex;
}

std::optional<std::string> key_from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  const auto digit = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; };
  std::string key;
  key.reserve(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int high = digit(hex[i]);
    const int low = digit(hex[i + 1]);
    if (high < 0 || low < 0) return std::nullopt;
    key += static_cast<char>(high * 16 + low);
  }
  return key;
}

}  // namespace director::net
