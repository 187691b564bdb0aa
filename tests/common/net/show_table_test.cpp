// net/show_table: the parser of HAProxy's `show table` answer, on answers captured from HAProxy.
#include "net/show_table.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <map>
#include <string>

using director::net::parse_show_table;

// Captured from HAProxy 2.6.12 and 3.2.0: a stick table tracking
// req.fhdr(x-forwarded-preferred-username) with `http-request track-sc1`; alice holds two
// WebSocket tunnels open, "bob smith" one, carol and "café" made a plain request each (its
// stream ended: no longer counted, although the keep-alive connection was still open).
TEST_CASE("show table output of HAProxy 2.6 and 3.2: open WebSockets count", "[show_table]") {
  const std::string haproxy_2_6 =
      "# table: user_connections, type: string, size:102400, used:4\n"
      "0x5633302ab9d8: key=alice use=2 exp=86399699 conn_cur=2 http_req_cnt=2\n"
      "0x5633302acda8: key=bob\\ smith use=1 exp=86399699 conn_cur=1 http_req_cnt=1\n"
      "0x5633302adff8: key=caf\\xC3\\xA9 use=0 exp=86399700 conn_cur=0 http_req_cnt=1\n"
      "0x7f4074043758: key=carol use=0 exp=86399700 conn_cur=0 http_req_cnt=1\n"
      "\n";
  const std::string haproxy_3_2 =
      "# table: user_connections, type: string, size:102400, used:4\n"
      "0x5638275d84e8: key=carol use=0 exp=86399699 shard=0 conn_cur=0 http_req_cnt=1\n"
      "0x5638275d8c38: key=caf\\xC3\\xA9 use=0 exp=86399699 shard=0 conn_cur=0 http_req_cnt=1\n"
      "0x7fa87c0545d8: key=bob\\ smith use=1 exp=86399698 shard=0 conn_cur=1 http_req_cnt=1\n"
      "0x5638275d7058: key=alice use=2 exp=86399695 shard=0 conn_cur=2 http_req_cnt=2\n"
      "\n";
  for (const auto& text : {haproxy_2_6, haproxy_3_2}) {
    CAPTURE(text);
    const auto table = parse_show_table(text);
    CHECK(table.header_seen);
    CHECK(table.skipped_lines == 0);
    CHECK(table.connections == std::map<std::string, std::uint64_t, std::less<>>{
                                   {"alice", 2}, {"bob smith", 1}, {"caf\xC3\xA9", 0}, {"carol", 0}});
  }
}

// Captured from HAProxy 2.6.12 (3.2.0 escapes alike): odd usernames, and one of 70 bytes, which
// the `len 64` table keeps as its first 64.
TEST_CASE("show table keys are unescaped as HAProxy escapes them", "[show_table]") {
  const auto table = parse_show_table(
      "# table: user_connections, type: string, size:102400, used:5\n"
      "0x55c3431aacb8: key=a\\=b\\tc\"d\\\\e use=0 exp=86399794 conn_cur=0 http_req_cnt=1\n"
      "0x55c3431aa5e8: key=" + std::string(64, 'x') + " use=0 exp=86399794 conn_cur=0 http_req_cnt=1\n"
      "\n");
  CHECK(table.skipped_lines == 0);
  CHECK(table.connections == std::map<std::string, std::uint64_t, std::less<>>{
                                 {"a=b\tc\"d\\e", 0}, {std::string(64, 'x'), 0}});
  CHECK(parse_show_table("0x1: key=\\r\\n\\x00\\x7f\\xff conn_cur=1\n").connections ==
        std::map<std::string, std::uint64_t, std::less<>>{{std::string("\r\n\0\x7f\xff", 5), 1}});
}

TEST_CASE("show table: malformed lines are skipped, unknown fields ignored", "[show_table]") {
  const auto table = parse_show_table(
      "0x1: key=ok use=0 future_field=7 conn_cur=4 gpc0=1\r\n"
      "0x2: key=nocount use=0 exp=1\n"
      "0x3: key=bad\\q conn_cur=1\n"
      "0x4: key=truncated\\x4 conn_cur=1\n"
      "0x5: key=neg conn_cur=-1\n"
      "0x6: key=huge conn_cur=99999999999999999999999\n"
      "0x7: key=junk conn_cur=1x\n"
      "garbage without a key\n"
      ": key=nopointer conn_cur=1\n"
      "0x8: key=last conn_cur=1");
  CHECK_FALSE(table.header_seen);
  CHECK(table.connections == std::map<std::string, std::uint64_t, std::less<>>{{"ok", 4}, {"last", 1}});
  CHECK(table.skipped_lines == 8);
  CHECK(parse_show_table("").connections.empty());
  CHECK(parse_show_table("Unknown table name.\n").skipped_lines == 1);
}
