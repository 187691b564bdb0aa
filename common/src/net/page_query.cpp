#include "net/page_query.hpp"

#include <charconv>
#include <optional>

namespace director::net::http {
namespace {

std::optional<std::size_t> parse_count(std::string_view text, std::size_t high) {
  if (text.empty() || text.size() > 9) return std::nullopt;
  std::size_t value = 0;
  const auto* end = text.data() + text.size();
  const auto [stop, error] = std::from_chars(text.data(), end, value);
  if (error != std::errc{} || stop != end || value > high) return std::nullopt;
  return value;
}

}  // namespace

std::variant<PageQuery, std::string> parse_page_query(std::string_view query) {
  PageQuery parsed;
  bool offset_seen = false;
  bool limit_seen = false;
  while (!query.empty()) {
    const auto ampersand = query.find('&');
    const auto parameter = query.substr(0, ampersand);
    query = ampersand == std::string_view::npos ? std::string_view{} : query.substr(ampersand + 1);
    if (parameter.empty()) continue;
    const auto equals = parameter.find('=');
    const auto name = parameter.substr(0, equals);
    const auto value = equals == std::string_view::npos ? std::string_view{} : parameter.substr(equals + 1);
    if (name == "offset") {
      if (offset_seen) return std::string("offset given twice");
      offset_seen = true;
      const auto offset = parse_count(value, PageQuery::max_offset);
      if (!offset) return std::string("offset must be an integer from 0 to 999999999");
      parsed.offset = *offset;
    } else if (name == "limit") {
      if (limit_seen) return std::string("limit given twice");
      limit_seen = true;
      const auto limit = parse_count(value, PageQuery::max_limit);
      if (!limit) return std::string("limit must be an integer from 0 to 1000");
      parsed.limit = *limit;
    } else {
      return "unknown parameter '" + std::string(name.substr(0, 64)) + "' (accepted: offset, limit)";
    }
  }
  return parsed;
}

}  // namespace director::net::http
