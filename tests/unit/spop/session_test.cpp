// Session tests: the HELLO negotiation, the frame-by-frame state machine, one section per
// protocol error with its DISCONNECT status, and feeding split at every offset.
#include "spop_test_support.hpp"

#include <catch2/catch.hpp>

#include <functional>
#include <limits>
#include <map>
#include <optional>

using namespace director::spop;
using spop_test::concat;
using spop_test::disconnect_status;
using spop_test::feed_in_pieces;
using spop_test::feed_whole;
using spop_test::from_hex;
using spop_test::hello_frame;
using spop_test::notify_frame;
using spop_test::route_messages;
using spop_test::standard_hello_items;
using spop_test::to_hex;

namespace {

constexpr std::uint64_t max_u64 = std::numeric_limits<std::uint64_t>::max();

struct AgentHello {
  std::string version;
  std::uint32_t max_frame_size = 0;
  std::string capabilities;
  std::vector<std::string> keys;
};

AgentHello decode_agent_hello(const Bytes& bytes) {
  const auto frame = spop_test::decode_whole(bytes);
  REQUIRE(frame.header == FrameHeader{FrameType::agent_hello, flag_fin, 0, 0});
  auto items = decode_kv_list(frame.payload);
  REQUIRE(items.has_value());
  AgentHello hello;
  for (const auto& item : *items) hello.keys.push_back(item.name);
  hello.version = std::get<std::string>(*find_value(*items, "version"));
  hello.max_frame_size = std::get<std::uint32_t>(*find_value(*items, "max-frame-size"));
  hello.capabilities = std::get<std::string>(*find_value(*items, "capabilities"));
  return hello;
}

// HELLO items with one item replaced (or removed when `value` is empty).
KvList hello_items_with(const std::string& key, std::optional<Value> value) {
  KvList items;
  bool replaced = false;
  for (auto& item : standard_hello_items()) {
    if (item.name != key) {
      items.push_back(item);
    } else if (value) {
      items.push_back(Argument{key, *value});
      replaced = true;
    }
  }
  if (value && !replaced) items.push_back(Argument{key, *value});
  return items;
}

Bytes raw_frame(FrameType type, std::uint32_t flags, std::uint64_t stream_id, std::uint64_t frame_id,
                const Bytes& payload) {
  Bytes frame;
  append_frame(frame, FrameHeader{type, flags, stream_id, frame_id}, payload);
  return frame;
}

// A session after a successful standard HELLO (HAProxy's max-frame-size as given).
Session session_after_hello(std::uint32_t haproxy_max_frame_size = 16380, SessionLimits limits = {}) {
  Session session(limits);
  const auto hello = hello_frame(standard_hello_items(haproxy_max_frame_size));
  const auto result = session.feed(hello);
  REQUIRE(result.consumed == hello.size());
  REQUIRE(result.writes.size() == 1);
  REQUIRE_FALSE(result.close);
  REQUIRE(session.state() == SessionState::processing);
  REQUIRE_FALSE(session.error_status());
  return session;
}

// Feeds `input` and requires exactly one AGENT-DISCONNECT with `status`, then closing, with
// error_status() reporting that status.
void require_disconnect(Session& session, const Bytes& input, Status status) {
  REQUIRE_FALSE(session.error_status());
  const auto result = session.feed(input);
  REQUIRE(result.close);
  REQUIRE(result.writes.size() == 1);
  CHECK(disconnect_status(result.writes.back()) == static_cast<std::uint32_t>(status));
  CHECK(session.error_status() == std::optional<Status>(status));
  REQUIRE(result.error);
  CHECK(result.error->status == status);
  CHECK_FALSE(result.error->detail.empty());
  CHECK(result.error->frame_number >= 1);
  CHECK_FALSE(result.haproxy_disconnect);
  CHECK(result.notifies.empty());
  CHECK(session.state() == SessionState::closing);
  // Once closing, nothing more is consumed or produced.
  const auto after = session.feed(notify_frame(1, 1, {}));
  CHECK(after.consumed == 0);
  CHECK(after.writes.empty());
  CHECK(after.notifies.empty());
}

void require_hello_rejected(const KvList& items, Status status) {
  Session session;
  require_disconnect(session, hello_frame(items), status);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// HELLO negotiation

TEST_CASE("HELLO: the AGENT-HELLO answers version 2.0, the smaller frame size, pipelining", "[session][hello]") {
  Session session;
  CHECK(session.state() == SessionState::awaiting_hello);
  CHECK(session.max_frame_size() == 16380);
  CHECK(session.max_buffered_bytes() == 16384);

  const auto hello = hello_frame(standard_hello_items());
  const auto result = session.feed(hello);
  CHECK(result.consumed == hello.size());
  CHECK_FALSE(result.close);
  CHECK(result.notifies.empty());
  REQUIRE(result.writes.size() == 1);
  const auto answer = decode_agent_hello(result.writes[0]);
  CHECK(answer.keys == std::vector<std::string>{"version", "max-frame-size", "capabilities"});
  CHECK(answer.version == "2.0");
  CHECK(answer.max_frame_size == 16380);
  CHECK(answer.capabilities == "pipelining");
  CHECK(session.state() == SessionState::processing);
  CHECK_FALSE(session.is_health_check());
}

TEST_CASE("HELLO: max-frame-size is min(HAProxy's, ours)", "[session][hello]") {
  SECTION("HAProxy's is smaller") {
    Session session;
    const auto result = session.feed(hello_frame(standard_hello_items(1000)));
    CHECK(decode_agent_hello(result.writes.at(0)).max_frame_size == 1000);
    CHECK(session.max_frame_size() == 1000);
    CHECK(session.max_buffered_bytes() == 1004);
  }
  SECTION("ours is smaller") {
    Session session(SessionLimits{4096});
    const auto result = session.feed(hello_frame(standard_hello_items(16380)));
    CHECK(decode_agent_hello(result.writes.at(0)).max_frame_size == 4096);
    CHECK(session.max_frame_size() == 4096);
  }
  SECTION("exactly 256 is accepted") {
    Session session;
    const auto result = session.feed(hello_frame(standard_hello_items(256)));
    CHECK(decode_agent_hello(result.writes.at(0)).max_frame_size == 256);
  }
  SECTION("any integer type is read, UINT64 above 2^32 included") {
    Session session;
    const auto result = session.feed(hello_frame(hello_items_with("max-frame-size", Value{std::uint64_t{1} << 40})));
    CHECK(decode_agent_hello(result.writes.at(0)).max_frame_size == 16380);
    Session other;
    const auto answer = other.feed(hello_frame(hello_items_with("max-frame-size", Value{std::int32_t{300}})));
    CHECK(decode_agent_hello(answer.writes.at(0)).max_frame_size == 300);
  }
  SECTION("our own limit is never below 256") {
    Session session(SessionLimits{10});
    CHECK(session.max_frame_size() == 256);
  }
}

TEST_CASE("HELLO: capabilities are a comma-separated list, spaces ignored, names matched whole", "[session][hello]") {
  const auto [capabilities, answer] = GENERATE(table<std::string, std::string>({
      {"pipelining", "pipelining"},
      {"pipelining,async", "pipelining"},
      {" async , pipelining ", "pipelining"},
      {"fragmentation,async,pipelining", "pipelining"},
      {"", ""},
      {"async", ""},
      {"pipelining2,xpipelining,pipe", ""},  // names match whole, never by prefix
      {"PIPELINING", ""},
  }));
  CAPTURE(capabilities);
  Session session;
  const auto result = session.feed(hello_frame(hello_items_with("capabilities", Value{capabilities})));
  REQUIRE(result.writes.size() == 1);
  CHECK(decode_agent_hello(result.writes[0]).capabilities == answer);
}

TEST_CASE("HELLO: any 2.x version in the list is answered with 2.0", "[session][hello]") {
  const auto versions = GENERATE(as<std::string>{}, "2.0", " 2.0 ", "1.0, 2.5", "2.1,3.0", "3.0 ,  2.0");
  CAPTURE(versions);
  Session other;
  const auto accepted = other.feed(hello_frame(hello_items_with("supported-versions", Value{versions})));
  REQUIRE(accepted.writes.size() == 1);
  CHECK(decode_agent_hello(accepted.writes[0]).version == "2.0");
}

TEST_CASE("HELLO: a health check is answered, then the peer is expected to close", "[session][hello]") {
  KvList items = {Argument{"supported-versions", std::string("2.0")},
                  Argument{"max-frame-size", std::uint32_t{16380}},
                  Argument{"capabilities", std::string()},
                  Argument{"healthcheck", true}};
  Session session;
  const auto result = session.feed(hello_frame(items));
  REQUIRE(result.writes.size() == 1);
  const auto answer = decode_agent_hello(result.writes[0]);
  CHECK(answer.capabilities.empty());
  CHECK(answer.keys == std::vector<std::string>{"version", "max-frame-size", "capabilities"});
  CHECK_FALSE(result.close);
  CHECK(session.is_health_check());
  CHECK(session.state() == SessionState::closing);
  const auto after = session.feed(notify_frame(1, 1, {}));
  CHECK(after.consumed == 0);
  CHECK(after.writes.empty());
  CHECK(after.notifies.empty());

  SECTION("healthcheck=false is an ordinary connection") {
    items.back().value = false;
    Session ordinary;
    ordinary.feed(hello_frame(items));
    CHECK_FALSE(ordinary.is_health_check());
    CHECK(ordinary.state() == SessionState::processing);
  }
}

// ---------------------------------------------------------------------------------------------
// Protocol errors: one section per error, each with the status HAProxy will log.

TEST_CASE("errors: each protocol violation yields its DISCONNECT status", "[session][errors]") {
  SECTION("3: a frame above our max-frame-size, known from its length alone") {
    Session session;
    require_disconnect(session, from_hex("00003ffd"), Status::frame_too_big);
  }
  SECTION("3: a frame above the negotiated max-frame-size") {
    auto session = session_after_hello(1000);
    require_disconnect(session, from_hex("000003e9"), Status::frame_too_big);
  }
  SECTION("4: a zero-length frame") {
    Session session;
    require_disconnect(session, from_hex("00000000"), Status::invalid_frame);
  }
  SECTION("4: a zero-length frame after HELLO") {
    auto session = session_after_hello();
    require_disconnect(session, from_hex("00000000"), Status::invalid_frame);
  }
  SECTION("4: a frame shorter than its header") {
    auto session = session_after_hello();
    require_disconnect(session, from_hex("00000006" "030000000100"), Status::invalid_frame);
  }
  SECTION("4: an id that does not fit in 64 bits") {
    auto session = session_after_hello();
    require_disconnect(session, from_hex("00000010" "0300000001" "fff0fefefefefefefe0f" "01"), Status::invalid_frame);
  }
  SECTION("4: an unknown frame type") {
    auto session = session_after_hello();
    require_disconnect(session, raw_frame(static_cast<FrameType>(42), flag_fin, 1, 1, {}), Status::invalid_frame);
  }
  SECTION("4: an agent frame type sent by HAProxy") {
    auto session = session_after_hello();
    Bytes ack;
    append_ack(ack, 1, 1, {});
    require_disconnect(session, ack, Status::invalid_frame);
  }
  SECTION("4: NOTIFY before HELLO") {
    Session session;
    require_disconnect(session, notify_frame(1, 1, route_messages("jack")), Status::invalid_frame);
  }
  SECTION("4: a second HELLO") {
    auto session = session_after_hello();
    require_disconnect(session, hello_frame(standard_hello_items()), Status::invalid_frame);
  }
  SECTION("4: a HELLO whose payload is truncated") {
    Session session;
    require_disconnect(session, raw_frame(FrameType::haproxy_hello, flag_fin, 0, 0, from_hex("1273757070")),
                       Status::invalid_frame);
  }
  SECTION("4: a NOTIFY whose payload is truncated") {
    auto session = session_after_hello();
    // "route", 4 arguments announced, one present.
    require_disconnect(session, raw_frame(FrameType::notify, flag_fin, 1, 1, from_hex("05726f75746504" "04757365720004")),
                       Status::invalid_frame);
  }
  SECTION("4: a NOTIFY with an unknown data type") {
    auto session = session_after_hello();
    require_disconnect(session, raw_frame(FrameType::notify, flag_fin, 1, 1, from_hex("016d01" "01610c")),
                       Status::invalid_frame);
  }
  SECTION("4: a HAPROXY-DISCONNECT whose payload is truncated") {
    auto session = session_after_hello();
    require_disconnect(session, raw_frame(FrameType::haproxy_disconnect, flag_fin, 0, 0, from_hex("0b737461")),
                       Status::invalid_frame);
  }
  SECTION("4: HELLO values of the wrong type") {
    require_hello_rejected(hello_items_with("supported-versions", Value{std::uint32_t{2}}), Status::invalid_frame);
    require_hello_rejected(hello_items_with("max-frame-size", Value{std::string("16380")}), Status::invalid_frame);
    require_hello_rejected(hello_items_with("capabilities", Value{Binary{"pipelining"}}), Status::invalid_frame);
    require_hello_rejected(hello_items_with("healthcheck", Value{std::uint32_t{1}}), Status::invalid_frame);
  }
  SECTION("5: no supported-versions") {
    require_hello_rejected(hello_items_with("supported-versions", std::nullopt), Status::no_version);
    require_hello_rejected({}, Status::no_version);  // the first missing item decides
    auto near_misses = hello_items_with("supported-versions", std::nullopt);
    near_misses.push_back(Argument{"supported-versionsx", std::string("2.0")});
    near_misses.push_back(Argument{"supported-version", std::string("2.0")});
    require_hello_rejected(near_misses, Status::no_version);
  }
  SECTION("6: no max-frame-size") {
    require_hello_rejected(hello_items_with("max-frame-size", std::nullopt), Status::no_max_frame_size);
  }
  SECTION("7: no capabilities") {
    require_hello_rejected(hello_items_with("capabilities", std::nullopt), Status::no_capabilities);
  }
  SECTION("8: no 2.x version") {
    for (const char* versions : {"1.0", "3.0", "", "20.0", "2", "2.x", "12.0, 3.1", ".0", "v2.0"}) {
      CAPTURE(versions);
      require_hello_rejected(hello_items_with("supported-versions", Value{std::string(versions)}), Status::bad_version);
    }
  }
  SECTION("9: HAProxy's max-frame-size below 256") {
    require_hello_rejected(hello_items_with("max-frame-size", Value{std::uint32_t{255}}), Status::bad_max_frame_size);
    require_hello_rejected(hello_items_with("max-frame-size", Value{std::uint32_t{0}}), Status::bad_max_frame_size);
    require_hello_rejected(hello_items_with("max-frame-size", Value{std::int64_t{-16380}}), Status::bad_max_frame_size);
  }
  SECTION("10: a NOTIFY without FIN") {
    auto session = session_after_hello();
    Bytes payload;
    append_messages(payload, route_messages("jack"));
    require_disconnect(session, raw_frame(FrameType::notify, 0, 1, 1, payload), Status::fragmentation_not_supported);
  }
  SECTION("10: a HELLO without FIN") {
    Session session;
    Bytes payload;
    append_kv_list(payload, standard_hello_items());
    require_disconnect(session, raw_frame(FrameType::haproxy_hello, 0, 0, 0, payload),
                       Status::fragmentation_not_supported);
  }
  SECTION("10: a fragment continuation (type 0)") {
    auto session = session_after_hello();
    require_disconnect(session, raw_frame(FrameType::fragment, flag_fin, 1, 1, from_hex("00")),
                       Status::fragmentation_not_supported);
  }
}

TEST_CASE("errors: the result says what the decoder found wrong, and at which frame", "[session][errors]") {
  SECTION("a truncated NOTIFY, the third frame of the connection") {
    auto session = session_after_hello();  // frame 1
    const auto good = notify_frame(7, 1, route_messages("jack"));  // frame 2
    // "route", 4 arguments announced, one present.
    Bytes truncated;
    append_frame(truncated, FrameHeader{FrameType::notify, flag_fin, 9, 3}, from_hex("05726f75746504" "04757365720004"));
    const auto result = session.feed(concat({good, truncated}));
    CHECK(result.notifies.size() == 1);
    REQUIRE(result.error);
    CHECK(result.error->status == Status::invalid_frame);
    CHECK(result.error->detail == "malformed NOTIFY: field runs past the end of its frame");
    CHECK(result.error->frame_number == 3);
    CHECK(result.error->frame_type == std::optional<FrameType>(FrameType::notify));
    CHECK(result.error->stream_id == 9);
    CHECK(result.error->frame_id == 3);
  }
  SECTION("an unknown data type in a HELLO") {
    Session session;
    const auto result = session.feed(raw_frame(FrameType::haproxy_hello, flag_fin, 0, 0, from_hex("01610c")));
    REQUIRE(result.error);
    CHECK(result.error->detail == "malformed HAPROXY-HELLO: unknown typed-data type");
    CHECK(result.error->frame_number == 1);
    CHECK(result.error->frame_type == std::optional<FrameType>(FrameType::haproxy_hello));
  }
  SECTION("a length above max-frame-size: no header to report") {
    auto session = session_after_hello(1000);
    const auto result = session.feed(from_hex("000003e9"));
    REQUIRE(result.error);
    CHECK(result.error->status == Status::frame_too_big);
    CHECK(result.error->detail == "frame is too big: length 1001 above max-frame-size 1000");
    CHECK(result.error->frame_number == 2);
    CHECK_FALSE(result.error->frame_type);
  }
  SECTION("a header that does not decode") {
    auto session = session_after_hello();
    const auto result =
        session.feed(from_hex("00000010" "0300000001" "fff0fefefefefefefe0f" "01"));  // stream id > 2^64
    REQUIRE(result.error);
    CHECK(result.error->detail == "malformed frame header: varint does not fit in 64 bits");
    CHECK_FALSE(result.error->frame_type);
  }
  SECTION("an unexpected frame type is named") {
    auto session = session_after_hello();
    Bytes ack;
    append_ack(ack, 4, 2, {});
    const auto result = session.feed(ack);
    REQUIRE(result.error);
    CHECK(result.error->detail == "unexpected frame type 103 (ACK)");
    CHECK(result.error->frame_type == std::optional<FrameType>(FrameType::ack));
    CHECK(result.error->stream_id == 4);
  }
  SECTION("a HELLO refused for its content keeps the spec's description") {
    Session session;
    const auto result = session.feed(hello_frame(hello_items_with("supported-versions", Value{std::string("3.0")})));
    REQUIRE(result.error);
    CHECK(result.error->status == Status::bad_version);
    CHECK(result.error->detail == "unsupported version");
  }
}

TEST_CASE("errors: frames decoded before the bad one are still reported", "[session][errors]") {
  auto session = session_after_hello();
  const auto good = notify_frame(7, 1, route_messages("jack"));
  const auto stream = concat({good, from_hex("00000000"), good});
  const auto result = session.feed(stream);
  CHECK(result.consumed == good.size() + 4);
  REQUIRE(result.notifies.size() == 1);
  CHECK(result.notifies[0].stream_id == 7);
  CHECK(result.close);
  CHECK(disconnect_status(result.writes.at(0)) == 4);
}

// ---------------------------------------------------------------------------------------------
// The state machine, frame by frame

TEST_CASE("flow: NOTIFYs carry their ids and messages and the session keeps no record of them", "[session][flow]") {
  auto session = session_after_hello();

  SECTION("ids 0 and 2^64-1, and an empty NOTIFY") {
    const std::pair<std::uint64_t, std::uint64_t> ids[] = {{0, 0}, {max_u64, max_u64}, {0, max_u64}, {max_u64, 1}, {0, 0}};
    for (const auto& [stream_id, frame_id] : ids) {
      const auto result = session.feed(notify_frame(stream_id, frame_id, route_messages("jack")));
      REQUIRE(result.notifies.size() == 1);
      CHECK(result.notifies[0].stream_id == stream_id);
      CHECK(result.notifies[0].frame_id == frame_id);
      CHECK(result.notifies[0].messages == route_messages("jack"));
      CHECK(result.writes.empty());
    }
    const auto empty = session.feed(notify_frame(3, 3, {}));
    REQUIRE(empty.notifies.size() == 1);
    CHECK(empty.notifies[0].messages.empty());
  }

  SECTION("64 pipelined NOTIFYs in one read, ACKed in reverse order") {
    Bytes stream;
    for (std::uint64_t i = 0; i < 64; ++i) append_notify(stream, 2 * i + 1, i % 3, route_messages("user" + std::to_string(i)));
    const auto result = session.feed(stream);
    CHECK(result.consumed == stream.size());
    CHECK(result.writes.empty());
    CHECK_FALSE(result.close);
    REQUIRE(result.notifies.size() == 64);
    for (std::uint64_t i = 0; i < 64; ++i) {
      CHECK(result.notifies[i].stream_id == 2 * i + 1);
      CHECK(result.notifies[i].frame_id == i % 3);
      CHECK(result.notifies[i].messages == route_messages("user" + std::to_string(i)));
    }
    for (auto notify = result.notifies.rbegin(); notify != result.notifies.rend(); ++notify) {
      const std::vector<Action> actions = {SetVar{Scope::transaction, "label", notify->messages[0].arguments[0].value},
                                           UnsetVar{Scope::request, "old"}};
      const auto ack = session.encode_ack(notify->stream_id, notify->frame_id, actions);
      CHECK_FALSE(ack.actions_dropped);
      const auto frame = spop_test::decode_whole(ack.frame);
      CHECK(frame.header == FrameHeader{FrameType::ack, flag_fin, notify->stream_id, notify->frame_id});
      CHECK(spop_test::value_of(decode_actions(frame.payload)) == actions);
    }
    CHECK(session.state() == SessionState::processing);
  }

  SECTION("NOTIFY with ABORT and FIN is an ordinary whole frame") {
    Bytes payload;
    append_messages(payload, route_messages("jack"));
    const auto result = session.feed(raw_frame(FrameType::notify, flag_fin | flag_abort, 9, 2, payload));
    REQUIRE(result.notifies.size() == 1);
    CHECK(result.notifies[0].stream_id == 9);
  }

  SECTION("a NOTIFY of exactly the negotiated size is accepted") {
    auto small = session_after_hello(300);
    Bytes frame;
    for (std::size_t size = 1; size < 300 && frame.size() != 4 + 300; ++size) {
      frame = notify_frame(1, 1, {Message{"m", {Argument{"u", std::string(size, 'u')}}}});
    }
    REQUIRE(frame.size() == 4 + 300);
    const auto result = small.feed(frame);
    CHECK(result.notifies.size() == 1);
    CHECK_FALSE(result.close);
  }

  SECTION("an empty read and a partial frame consume nothing") {
    CHECK(session.feed({}).consumed == 0);
    const auto frame = notify_frame(1, 1, route_messages("jack"));
    const auto result = session.feed(std::span(frame).first(frame.size() - 1));
    CHECK(result.consumed == 0);
    CHECK(result.notifies.empty());
    CHECK(result.writes.empty());
    CHECK_FALSE(result.close);
  }
}

TEST_CASE("flow: HAPROXY-DISCONNECT is answered with AGENT-DISCONNECT normal, then close", "[session][flow]") {
  const Bytes captured_agent_disconnect =
      from_hex("00000025660000000100000b7374617475732d636f64650300076d65737361676508066e6f726d616c");
  Bytes haproxy_disconnect;
  append_haproxy_disconnect(haproxy_disconnect, Status::normal, "normal");

  SECTION("after HELLO, with NOTIFYs in the same read") {
    auto session = session_after_hello();
    const auto stream = concat({notify_frame(1, 1, {}), haproxy_disconnect, notify_frame(3, 1, {})});
    const auto result = session.feed(stream);
    CHECK(result.notifies.size() == 1);
    REQUIRE(result.writes.size() == 1);
    CHECK(to_hex(result.writes[0]) == to_hex(captured_agent_disconnect));
    CHECK(result.close);
    CHECK(result.consumed == stream.size() - notify_frame(3, 1, {}).size());
    CHECK(session.state() == SessionState::closing);
    CHECK_FALSE(session.error_status());  // HAProxy said goodbye: not a protocol error
    CHECK_FALSE(result.error);
    CHECK(result.haproxy_disconnect == std::optional<DisconnectInfo>(DisconnectInfo{0, "normal"}));
  }
  SECTION("before HELLO, and whatever status HAProxy gives") {
    Bytes error_disconnect;
    append_haproxy_disconnect(error_disconnect, Status::bad_version, "unsupported version");
    Session session;
    const auto result = session.feed(error_disconnect);
    REQUIRE(result.writes.size() == 1);
    CHECK(to_hex(result.writes[0]) == to_hex(captured_agent_disconnect));
    CHECK(result.close);
    CHECK_FALSE(session.error_status());  // HAProxy's status is its own, not our protocol error
    CHECK_FALSE(result.error);
    // ... and is kept, with its message, for the connection to log.
    CHECK(result.haproxy_disconnect ==
          std::optional<DisconnectInfo>(DisconnectInfo{8, "unsupported version"}));
  }
  SECTION("without its mandatory status-code and message: a protocol error") {
    auto session = session_after_hello();
    Bytes payload;
    const Argument only_message[] = {Argument{"message", std::string("bye")}};
    append_kv_list(payload, only_message);
    Bytes frame;
    append_frame(frame, FrameHeader{FrameType::haproxy_disconnect, flag_fin, 0, 0}, payload);
    const auto result = session.feed(frame);
    REQUIRE(result.error);
    CHECK(result.error->status == Status::invalid_frame);
    CHECK(result.error->detail == "malformed HAPROXY-DISCONNECT: mandatory item missing");
    CHECK_FALSE(result.haproxy_disconnect);
  }
}

TEST_CASE("ACK encoding: FIN, at least one action, within the frame size", "[session][ack]") {
  const std::string placeholder_payload = "01030209" "756e68616e646c6564" "11";  // set-var(txn, "unhandled", true)

  SECTION("no actions: the placeholder") {
    Session session;
    const auto ack = session.encode_ack(5, 1, {});
    CHECK(to_hex(ack.frame) == "00000015" "67" "00000001" "05" "01" + placeholder_payload);
    CHECK_FALSE(ack.actions_dropped);  // there were none to drop
  }
  SECTION("too big for the negotiated frame size: the placeholder; a frame that fits exactly is kept") {
    auto session = session_after_hello(256);
    const auto actions_of = [](std::size_t value_size) {
      return std::vector<Action>{SetVar{Scope::transaction, "v", std::string(value_size, 'x')}};
    };
    const auto ack_of = [&](std::size_t value_size) {
      return session.encode_ack(max_u64, max_u64, actions_of(value_size));
    };
    const auto unchecked_size = [&](std::size_t value_size) {
      Bytes ack;
      append_ack(ack, max_u64, max_u64, actions_of(value_size));
      return ack.size();
    };
    std::size_t fitting = 200;
    while (unchecked_size(fitting + 1) <= 4 + 256) ++fitting;
    const auto exact = ack_of(fitting);
    CHECK(exact.frame.size() == 4 + 256);
    CHECK_FALSE(exact.actions_dropped);
    CHECK(spop_test::value_of(decode_actions(spop_test::decode_whole(exact.frame).payload)) ==
          std::vector<Action>{SetVar{Scope::transaction, "v", std::string(fitting, 'x')}});
    const auto too_big = ack_of(fitting + 1);
    CHECK(too_big.actions_dropped);  // reported, so that it is not counted as the decision
    const auto frame = spop_test::decode_whole(too_big.frame);
    CHECK(frame.header == FrameHeader{FrameType::ack, flag_fin, max_u64, max_u64});
    CHECK(to_hex(frame.payload) == placeholder_payload);
  }
  SECTION("the captured reference ACK") {
    Session session;
    const std::vector<Action> actions = {SetVar{Scope::session, "ip_score", std::uint32_t{72}}};
    CHECK(to_hex(session.encode_ack(0, 1, actions).frame) == "00000015670000000100010103010869705f73636f72650348");
  }
}

TEST_CASE("disconnect(): the agent's own goodbye", "[session]") {
  auto session = session_after_hello(256);
  const auto frame = session.disconnect(Status::resource_allocation, std::string(1000, 'm'));
  CHECK(session.state() == SessionState::closing);
  CHECK(frame.size() <= 4 + 256);
  CHECK(disconnect_status(frame) == 13);
  CHECK(session.feed(notify_frame(1, 1, {})).consumed == 0);
  CHECK_FALSE(session.error_status());  // the agent's own goodbye is not a protocol error
}

// ---------------------------------------------------------------------------------------------
// Splitting: a session fed the same bytes in any pieces gives the same results.

namespace {

void require_same_result_at_every_split(const std::function<Session()>& make_session, const Bytes& stream) {
  auto reference_session = make_session();
  const auto whole = feed_whole(reference_session, stream);
  const auto reference_state = reference_session.state();
  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    auto session = make_session();
    const auto split = feed_in_pieces(session, stream, {cut});
    CAPTURE(cut);
    REQUIRE(split == whole);
    REQUIRE(session.state() == reference_state);
  }
  std::vector<std::size_t> every_byte;
  for (std::size_t cut = 1; cut < stream.size(); ++cut) every_byte.push_back(cut);
  auto session = make_session();
  REQUIRE(feed_in_pieces(session, stream, every_byte) == whole);
  REQUIRE(session.state() == reference_state);
}

}  // namespace

TEST_CASE("splitting: every captured frame and connection, split at every offset", "[session][split][golden]") {
  const std::string file = GENERATE(from_range(spop_test::capture_files));
  const auto frames = spop_test::load_capture(file);
  std::map<int, Bytes> streams;  // each connection's HAProxy-to-agent bytes
  for (const auto& captured : frames) {
    if (captured.direction != "H>A") continue;
    CAPTURE(file, captured.line);
    auto& stream = streams[captured.connection];
    stream.insert(stream.end(), captured.bytes.begin(), captured.bytes.end());
    const bool is_hello = captured.type == "HAPROXY-HELLO";
    require_same_result_at_every_split(
        [&] { return is_hello ? Session{} : session_after_hello(); }, captured.bytes);
  }
  for (const auto& [connection, stream] : streams) {
    CAPTURE(file, connection);
    require_same_result_at_every_split([] { return Session{}; }, stream);
  }
}

TEST_CASE("splitting: a synthetic stream ending in each kind of error", "[session][split]") {
  const auto hello = hello_frame(standard_hello_items(1000));
  const auto notifies = concat({notify_frame(0, 1, route_messages("a")), notify_frame(max_u64, 2, {})});
  const auto ending = GENERATE(as<std::string>{},
                               "",                                      // no error
                               "000003e9",                              // too big
                               "00000000",                              // empty
                               "0000000703000000000101",                // no FIN
                               "0000000700000000010101",                // fragment
                               "00000009030000000101010561",            // truncated payload
                               "00000025020000000100000b7374617475732d636f64650300076d65737361676508066e6f726d616c");
  CAPTURE(ending);
  const auto stream = concat({hello, notifies, from_hex(ending), notify_frame(5, 5, {})});
  require_same_result_at_every_split([] { return Session{}; }, stream);
}
