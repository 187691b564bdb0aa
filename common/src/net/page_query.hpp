// The paging query of the list endpoints (the agent's and the spawner's GET /users):
// `offset=N&limit=M`, both optional, each at most once.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <variant>

namespace director::net::http {

struct PageQuery {
  static constexpr std::size_t default_limit = 100;
  static constexpr std::size_t max_limit = 1000;
  static constexpr std::size_t max_offset = 999'999'999;

  std::size_t offset = 0;
  std::size_t limit = default_limit;
};

// The query (without '?'); anything else than the two parameters, repeated or out of range, is
// an error message for a 400.
std::variant<PageQuery, std::string> parse_page_query(std::string_view query);

}  // namespace director::net::http
