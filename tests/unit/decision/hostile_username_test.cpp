// The hostile identities of tests/data/hostile-usernames.txt against the username mapping alone
// (the same table goes through HAProxy and the agent in tests/e2e/test_hostile_identities.py).
// For every value: strict mode does what the table says; escape mode gives a valid DNS label of
// its own, never a real user's label, never one that parses as an address, and never the same
// label as another value of the table.
#include "decision/username.hpp"

#include <boost/asio/ip/address.hpp>

#include <catch2/catch.hpp>

#include <cstddef>
#include <fstream>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

using director::decision::map_username;
using director::decision::UsernameMode;

namespace {

constexpr std::string_view kPrefix = "vscode";

// The real users of the e2e test, each with a container: no hostile value may map to them.
const std::set<std::string> kRealUsers = {"alice", "bob", "jack", "127"};

struct Hostile {
  std::size_t line = 0;
  std::string strict;  // own, invalid, too-long, empty
  std::string where;   // e2e, agent
  std::string value;   // raw bytes
};

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  throw std::runtime_error(std::string("bad hex digit ") + c);
}

// \\ \t \r \n \0 \xHH; everything else literal.
std::string unescape(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\') {
      out.push_back(text[i]);
      continue;
    }
    if (++i == text.size()) throw std::runtime_error("dangling backslash");
    switch (text[i]) {
      case '\\': out.push_back('\\'); break;
      case 't': out.push_back('\t'); break;
      case 'r': out.push_back('\r'); break;
      case 'n': out.push_back('\n'); break;
      case '0': out.push_back('\0'); break;
      case 'x':
        if (i + 2 >= text.size()) throw std::runtime_error("short \\x escape");
        out.push_back(static_cast<char>(hex_digit(text[i + 1]) * 16 + hex_digit(text[i + 2])));
        i += 2;
        break;
      default: throw std::runtime_error(std::string("unknown escape \\") + text[i]);
    }
  }
  return out;
}

std::vector<std::string_view> split_tabs(std::string_view line, std::size_t fields) {
  std::vector<std::string_view> out;
  while (out.size() + 1 < fields) {
    const auto tab = line.find('\t');
    if (tab == std::string_view::npos) break;
    out.push_back(line.substr(0, tab));
    line.remove_prefix(tab + 1);
  }
  out.push_back(line);
  return out;
}

const std::vector<Hostile>& hostile() {
  static const std::vector<Hostile> table = [] {
    std::vector<Hostile> rows;
    std::ifstream file(std::string(DIRECTOR_TEST_DATA_DIR) + "/hostile-usernames.txt", std::ios::binary);
    if (!file) throw std::runtime_error("cannot open tests/data/hostile-usernames.txt");
    std::string line;
    std::size_t number = 0;
    while (std::getline(file, line)) {
      ++number;
      if (line.empty() || line.front() == '#') continue;
      const auto fields = split_tabs(line, 4);
      if (fields.size() != 4) throw std::runtime_error("line " + std::to_string(number) + ": want 4 fields");
      Hostile row;
      row.line = number;
      row.strict = fields[0];
      row.where = fields[1];
      const std::string unit = unescape(fields[3]);
      for (int i = std::stoi(std::string(fields[2])); i > 0; --i) row.value += unit;
      rows.push_back(std::move(row));
    }
    return rows;
  }();
  return table;
}

bool is_label_char(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

bool is_dns_label(std::string_view label) {
  if (label.empty() || label.size() > 63 || !is_label_char(label.front()) || !is_label_char(label.back())) {
    return false;
  }
  for (const char c : label) {
    if (!is_label_char(c) && c != '-') return false;
  }
  return true;
}

bool parses_as_address(const std::string& text) {
  boost::system::error_code error;
  (void)boost::asio::ip::make_address(text, error);
  return !error;
}

std::string outcome(std::string_view value, UsernameMode mode) {
  const auto label = map_username(value, mode, kPrefix);
  return label ? *label : "error:" + std::string(to_string(label.error()));
}

}  // namespace

TEST_CASE("hostile usernames: the table has every kind, at least 100 values", "[username][hostile]") {
  const auto& rows = hostile();
  CHECK(rows.size() >= 100);
  std::set<std::string> values;
  for (const auto& row : rows) {
    CAPTURE(row.line);
    CHECK((row.strict == "own" || row.strict == "invalid" || row.strict == "too-long" || row.strict == "empty"));
    CHECK((row.where == "e2e" || row.where == "agent"));
    CHECK(values.insert(row.value).second);  // no value twice
  }
}

TEST_CASE("hostile usernames: strict mode refuses them or keeps them as their own label",
          "[username][hostile]") {
  for (const auto& row : hostile()) {
    CAPTURE(row.line, row.value);
    const std::string got = outcome(row.value, UsernameMode::strict);
    if (row.strict == "own") {
      CHECK(got == row.value);
      CHECK(is_dns_label(std::string(kPrefix) + "-" + got));
    } else {
      CHECK(got == "error:" + row.strict);
    }
    CHECK(kRealUsers.count(got) == 0);
  }
}

TEST_CASE("hostile usernames: escape mode gives each its own safe label", "[username][hostile]") {
  std::map<std::string, std::size_t> line_of_label;
  for (const auto& row : hostile()) {
    CAPTURE(row.line, row.value);
    const std::string got = outcome(row.value, UsernameMode::escape);
    if (row.strict == "empty") {
      CHECK(got == "error:empty");
      continue;
    }
    const std::string host = std::string(kPrefix) + "-" + got;
    CHECK(is_dns_label(host));  // one label: no dot, no colon, at most 63 characters
    CHECK_FALSE(parses_as_address(got));
    CHECK_FALSE(parses_as_address(host));
    CHECK(kRealUsers.count(got) == 0);
    if (row.strict == "own") {
      CHECK(got == row.value);
    } else {
      CHECK(got != row.value);
      CHECK(got.size() >= 18);
      CHECK(got[got.size() - 17] == '-');
    }
    CHECK(outcome(row.value, UsernameMode::escape) == got);  // deterministic
    const auto [previous, inserted] = line_of_label.emplace(got, row.line);
    CAPTURE(previous->second);
    CHECK(inserted);
  }
}

TEST_CASE("hostile usernames: the real users map to themselves in both modes", "[username][hostile]") {
  for (const auto& user : kRealUsers) {
    CHECK(outcome(user, UsernameMode::strict) == user);
    CHECK(outcome(user, UsernameMode::escape) == user);
  }
}
