#include "core/activity.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

using namespace director::spawner::core;
using namespace std::chrono_literals;

namespace {
const TimePoint t0 = TimePoint{} + 1000h;
}

TEST_CASE("agent /users pages", "[activity][agent_users]") {
  const auto page = parse_agent_users(R"({
    "total": 5, "offset": 0,
    "users": [
      {"label": "bob", "host": "vscode-bob", "address": null, "state": "not_alive", "reason": "no-such-host",
       "last_seen_seconds_ago": 0.027, "last_checked_seconds_ago": 0.027, "last_probe_ms": null},
      {"label": "alice", "host": "vscode-alice", "address": "127.0.89.1", "state": "alive", "reason": "ok",
       "last_seen_seconds_ago": 3600, "last_checked_seconds_ago": 0.045, "last_probe_ms": 0.381},
      {"label": "alice", "last_seen_seconds_ago": 10.5},
      {"label": "", "last_seen_seconds_ago": 1},
      {"label": "negative", "last_seen_seconds_ago": -1},
      {"label": "text", "last_seen_seconds_ago": "1"},
      {"last_seen_seconds_ago": 1},
      ["not", "an", "object"],
      {"label": "ancient", "last_seen_seconds_ago": 1e300}
    ]})",
                                      t0);
  REQUIRE(page.has_value());
  CHECK(page->total == 5);
  CHECK(page->offset == 0);
  CHECK(page->rows == 9);
  CHECK(page->skipped_rows == 6);
  REQUIRE(page->last_request.size() == 2);
  CHECK(page->last_request.at("bob") == t0 - 27ms);
  CHECK(page->last_request.at("alice") == t0 - 10500ms);  // the most recent of its rows
}

TEST_CASE("agent /users: bodies that are not a page are errors", "[activity][agent_users]") {
  for (const std::string& body : std::vector<std::string>{"", "not json", "[]", "{}", R"({"total":-1,"offset":0,"users":[]})",
                                 R"({"total":1,"offset":0})", R"({"total":1,"offset":0,"users":{}})",
                                 R"({"total":"1","offset":0,"users":[]})", R"({"total":1,"offset":0.5,"users":[]})",
                                 std::string(100, '[') + std::string(100, ']')}) {
    CAPTURE(body);
    CHECK_FALSE(parse_agent_users(body, t0).has_value());
  }
  const auto empty = parse_agent_users(R"({"total":0,"offset":0,"users":[]})", t0);
  REQUIRE(empty.has_value());
  CHECK(empty->last_request.empty());
  // Brackets inside strings do not count as nesting.
  const auto nested_text = parse_agent_users(
      R"({"total":1,"offset":0,"users":[{"label":"a","reason":")" + std::string(100, '[') +
          R"(\"","last_seen_seconds_ago":1}]})",
      t0);
  REQUIRE(nested_text.has_value());
  CHECK(nested_text->last_request.size() == 1);
}

TEST_CASE("merging agents keeps the most recent request", "[activity]") {
  std::map<std::string, TimePoint, std::less<>> merged{{"alice", t0 - 1h}, {"bob", t0 - 1min}};
  merge_last_request(merged, {{"alice", t0 - 1min}, {"bob", t0 - 1h}, {"carol", t0}});
  CHECK(merged == std::map<std::string, TimePoint, std::less<>>{{"alice", t0 - 1min}, {"bob", t0 - 1min}, {"carol", t0}});
}

TEST_CASE("open connections by label: usernames cut as the table cuts them", "[activity]") {
  auto container = [](std::string label, std::string username) {
    ContainerStatus status;
    status.label = std::move(label);
    status.username = std::move(username);
    return status;
  };
  const std::string long_a = std::string(64, 'u') + "-a";
  const std::string long_b = std::string(64, 'u') + "-b";
  const auto by_label = open_connections_by_label(
      {container("alice", "Alice"), container("bob", "bob"), container("la", long_a), container("lb", long_b),
       container("", "nolabel")},
      {{"Alice", 2}, {"bob", 0}, {std::string(64, 'u'), 1}, {"nolabel", 5}});
  CHECK(by_label == std::map<std::string, std::uint64_t, std::less<>>{{"alice", 2}, {"la", 1}, {"lb", 1}});
}

TEST_CASE("agent /connections pages", "[activity][agent_connections]") {
  const auto page = parse_agent_connections(
      R"({"table":"user_connections","sockets":["/run/haproxy.sock"],"total":3,)"
      R"("connections":[{"key":"616c696365","user":"alice","open":2},)"
      R"({"key":"626f6220736d697468","user":"bob smith","open":1},{"key":"616c696365","user":"alice","open":1}],)"
      R"("next":"626f6220736d697468"})");
  REQUIRE(page.has_value());
  CHECK(page->sockets == 1);
  CHECK(page->connections == std::map<std::string, std::uint64_t, std::less<>>{{"alice", 3}, {"bob smith", 1}});
  CHECK(page->next == "626f6220736d697468");
  const auto last = parse_agent_connections(R"({"sockets":[],"connections":[],"next":null})");
  REQUIRE(last.has_value());
  CHECK(last->sockets == 0);
  CHECK(last->connections.empty());
  CHECK(last->next.empty());
}

TEST_CASE("agent /connections: a key cut inside a UTF-8 character matches its user", "[activity][agent_connections]") {
  // HAProxy keeps the first 64 bytes of "uuu...é": 63 'u' and the first byte of "é" (0xc3),
  // which the agent's "user" can only show as U+FFFD; its "key" carries the byte.
  const std::string username = std::string(63, 'u') + "\xc3\xa9";
  std::string key_hex;
  for (int i = 0; i < 63; ++i) key_hex += "75";
  key_hex += "c3";
  const auto page = parse_agent_connections(
      R"({"sockets":["/run/haproxy.sock"],"connections":[{"key":")" + key_hex +
      R"(","user":")" + std::string(63, 'u') + R"(\ufffd","open":1}],"next":null})");
  REQUIRE(page.has_value());
  ContainerStatus cut;
  cut.label = "lcut";
  cut.username = username;
  const auto by_label = open_connections_by_label({cut}, page->connections);
  CHECK(by_label == std::map<std::string, std::uint64_t, std::less<>>{{"lcut", 1}});
}

TEST_CASE("agent /connections: a bad row or cursor makes the whole page an error", "[activity][agent_connections]") {
  for (const auto* body : {
           "", "[]", "not json", R"({"connections":[],"next":null})", R"({"sockets":[],"next":null})",
           R"({"sockets":[],"connections":[]})", R"({"sockets":[],"connections":{},"next":null})",
           R"({"sockets":[],"connections":[{"key":"61"}],"next":null})",
           R"({"sockets":[],"connections":[{"key":"61","open":-1}],"next":null})",
           R"({"sockets":[],"connections":[{"key":1,"open":1}],"next":null})",
           R"({"sockets":[],"connections":[{"key":"61","open":1.5}],"next":null})",
           R"({"sockets":[],"connections":[{"user":"a","open":1}],"next":null})",
           R"({"sockets":[],"connections":[{"key":"6","open":1}],"next":null})",
           R"({"sockets":[],"connections":[{"key":"6G","open":1}],"next":null})",
           R"({"sockets":[],"connections":[{"key":"6A","open":1}],"next":null})",
           R"({"sockets":[],"connections":[7],"next":null})",
           R"({"sockets":[],"connections":[],"next":""})", R"({"sockets":[],"connections":[],"next":"abc"})",
           R"({"sockets":[],"connections":[],"next":"6G"})", R"({"sockets":[],"connections":[],"next":"6A"})",
           R"({"sockets":[],"connections":[],"next":"../x"})", R"({"sockets":[],"connections":[],"next":7})"}) {
    CAPTURE(body);
    CHECK_FALSE(parse_agent_connections(body).has_value());
  }
  CHECK_FALSE(parse_agent_connections(std::string(40, '[') + std::string(40, ']')).has_value());
}
