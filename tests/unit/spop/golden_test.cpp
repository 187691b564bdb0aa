// Golden bytes: frames real HAProxy 2.6.12 and 3.5-dev5 sent, and the answers of HAProxy's
// reference agent (tests/data/spop-captures). Our decoder reads them, our encoders reproduce
// them, and a Session answers byte for byte as the reference agent did.
#include "spop_test_support.hpp"

#include <catch2/catch.hpp>

#include <map>
#include <set>

using namespace director::spop;
using spop_test::CapturedFrame;
using spop_test::load_capture;
using spop_test::to_hex;

namespace {

const std::string& string_of(const Value* value) {
  REQUIRE(value != nullptr);
  const auto* text = std::get_if<std::string>(value);
  REQUIRE(text != nullptr);
  return *text;
}

// Re-encodes a decoded frame with the public encoder of its type.
Bytes reencode(const FrameView& frame) {
  Bytes out;
  const auto& header = frame.header;
  switch (header.type) {
    case FrameType::haproxy_hello: {
      auto items = decode_kv_list(frame.payload);
      REQUIRE(items.has_value());
      append_haproxy_hello(out, *items);
      break;
    }
    case FrameType::haproxy_disconnect:
    case FrameType::agent_disconnect: {
      auto info = decode_disconnect(frame.payload);
      REQUIRE(info.has_value());
      const auto status = static_cast<Status>(info->status_code);
      if (header.type == FrameType::haproxy_disconnect) {
        append_haproxy_disconnect(out, status, info->message);
      } else {
        append_agent_disconnect(out, status, info->message);
      }
      break;
    }
    case FrameType::notify: {
      auto messages = decode_messages(frame.payload);
      REQUIRE(messages.has_value());
      append_notify(out, header.stream_id, header.frame_id, *messages);
      break;
    }
    case FrameType::agent_hello: {
      auto items = decode_kv_list(frame.payload);
      REQUIRE(items.has_value());
      REQUIRE(items->size() == 3);
      const auto* size = std::get_if<std::uint32_t>(find_value(*items, "max-frame-size"));
      REQUIRE(size != nullptr);
      append_agent_hello(out, string_of(find_value(*items, "version")), *size,
                         string_of(find_value(*items, "capabilities")));
      break;
    }
    case FrameType::ack: {
      auto actions = decode_actions(frame.payload);
      REQUIRE(actions.has_value());
      append_ack(out, header.stream_id, header.frame_id, *actions);
      break;
    }
    default:
      FAIL("unexpected frame type in a capture");
  }
  return out;
}

std::vector<int> connections_of(const std::vector<CapturedFrame>& frames) {
  std::set<int> connections;
  for (const auto& frame : frames) connections.insert(frame.connection);
  return {connections.begin(), connections.end()};
}

struct CapturedNotify {
  int connection;
  std::uint64_t stream_id;
  std::uint64_t frame_id;
  std::vector<Message> messages;
};

std::vector<CapturedNotify> notifies_of(const std::vector<CapturedFrame>& frames) {
  std::vector<CapturedNotify> notifies;
  for (const auto& captured : frames) {
    if (captured.type != "NOTIFY") continue;
    const auto frame = spop_test::decode_whole(captured.bytes);
    auto messages = decode_messages(frame.payload);
    REQUIRE(messages.has_value());
    notifies.push_back({captured.connection, frame.header.stream_id, frame.header.frame_id, std::move(*messages)});
  }
  return notifies;
}

// Checks the two messages of the `director-route` SPOE group and returns the `user` argument.
Value check_route_messages(const std::vector<Message>& messages) {
  REQUIRE(messages.size() == 2);
  const auto& route = messages[0];
  CHECK(route.name == "route");
  REQUIRE(route.arguments.size() == 4);
  CHECK(route.arguments[0].name == "user");
  CHECK(route.arguments[1] == Argument{"host", std::string("127.0.0.1:18300")});
  CHECK(route.arguments[2] == Argument{"src", Ipv4{{127, 0, 0, 1}}});
  CHECK(route.arguments[3] == Argument{"method", std::string("GET")});
  CHECK(messages[1] == Message{"check-client-ip", {Argument{"ip", Ipv4{{127, 0, 0, 1}}}}});
  return route.arguments[0].value;
}

void check_hello(const CapturedFrame& captured, std::string_view capabilities, bool health_check) {
  const auto frame = spop_test::decode_whole(captured.bytes);
  CHECK(frame.header == FrameHeader{FrameType::haproxy_hello, flag_fin, 0, 0});
  auto items = decode_kv_list(frame.payload);
  REQUIRE(items.has_value());
  CHECK(string_of(find_value(*items, "supported-versions")) == "2.0");
  REQUIRE(find_value(*items, "max-frame-size") != nullptr);
  CHECK(*find_value(*items, "max-frame-size") == Value{std::uint32_t{16380}});
  CHECK(string_of(find_value(*items, "capabilities")) == capabilities);
  if (health_check) {
    REQUIRE(find_value(*items, "healthcheck") != nullptr);
    CHECK(*find_value(*items, "healthcheck") == Value{true});
  } else {
    CHECK(find_value(*items, "healthcheck") == nullptr);
    CHECK(string_of(find_value(*items, "engine-id")).size() == 36);
  }
}

}  // namespace

TEST_CASE("captures: every frame decodes and re-encodes to the captured bytes", "[golden]") {
  const std::string file = GENERATE(from_range(spop_test::capture_files));
  const auto frames = load_capture(file);
  REQUIRE(frames.size() >= 14);
  for (const auto& captured : frames) {
    CAPTURE(file, captured.line, captured.type);
    const auto frame = spop_test::decode_whole(captured.bytes);
    CHECK(to_string(frame.header.type) == captured.type);
    CHECK(frame.header.flags == flag_fin);
    const bool from_haproxy = static_cast<int>(frame.header.type) < 100;
    CHECK(captured.direction == (from_haproxy ? "H>A" : "A>H"));
    CHECK(to_hex(reencode(frame)) == to_hex(captured.bytes));
  }
}

TEST_CASE("captures: HAProxy 2.6.12 contents", "[golden]") {
  const auto frames = load_capture("haproxy-2.6.12.frames");

  for (const auto& captured : frames) {
    if (captured.type != "HAPROXY-HELLO") continue;
    CAPTURE(captured.line);
    const bool health_check = captured.connection <= 3;
    check_hello(captured, health_check ? "" : "pipelining,async", health_check);
  }

  const auto notifies = notifies_of(frames);
  REQUIRE(notifies.size() == 3);
  CHECK(notifies[0].connection == 4);
  CHECK(notifies[0].stream_id == 0);
  CHECK(notifies[1].connection == 5);
  CHECK(notifies[1].stream_id == 2);
  CHECK(notifies[2].connection == 4);
  CHECK(notifies[2].stream_id == 4);
  for (const auto& notify : notifies) CHECK(notify.frame_id == 1);
  CHECK(check_route_messages(notifies[0].messages) == Value{std::string("jack")});
  CHECK(check_route_messages(notifies[1].messages) == Value{Null{}});
  CHECK(check_route_messages(notifies[2].messages) ==
        Value{std::string("J\xc3\xa4" "ck.Doe@Example.com")});

  std::vector<std::pair<std::uint64_t, std::vector<Action>>> acks;
  for (const auto& captured : frames) {
    if (captured.type != "ACK") continue;
    const auto frame = spop_test::decode_whole(captured.bytes);
    auto actions = decode_actions(frame.payload);
    REQUIRE(actions.has_value());
    CHECK(frame.header.frame_id == 1);
    acks.emplace_back(frame.header.stream_id, std::move(*actions));
  }
  REQUIRE(acks.size() == 3);
  CHECK(acks[0] == std::pair{std::uint64_t{0}, std::vector<Action>{SetVar{Scope::session, "ip_score", std::uint32_t{72}}}});
  CHECK(acks[1] == std::pair{std::uint64_t{2}, std::vector<Action>{SetVar{Scope::session, "ip_score", std::uint32_t{46}}}});
  CHECK(acks[2] == std::pair{std::uint64_t{4}, std::vector<Action>{SetVar{Scope::session, "ip_score", std::uint32_t{22}}}});

  int disconnects = 0;
  for (const auto& captured : frames) {
    if (captured.type != "HAPROXY-DISCONNECT" && captured.type != "AGENT-DISCONNECT") continue;
    const auto frame = spop_test::decode_whole(captured.bytes);
    CHECK(spop_test::value_of(decode_disconnect(frame.payload)) == DisconnectInfo{0, "normal"});
    ++disconnects;
  }
  CHECK(disconnects == 4);
}

TEST_CASE("captures: HAProxy 3.5-dev5 contents", "[golden]") {
  const auto frames = load_capture("haproxy-3.5-dev5.frames");
  for (const auto& captured : frames) {
    if (captured.type != "HAPROXY-HELLO") continue;
    CAPTURE(captured.line);
    const bool health_check = captured.connection <= 3;
    check_hello(captured, health_check ? "" : "pipelining", health_check);
  }
  const auto notifies = notifies_of(frames);
  REQUIRE(notifies.size() == 3);
  std::vector<std::uint64_t> stream_ids;
  for (const auto& notify : notifies) {
    stream_ids.push_back(notify.stream_id);
    CHECK(notify.frame_id == 1);
    CHECK(notify.connection == 4);
  }
  CHECK(stream_ids == std::vector<std::uint64_t>{1, 3, 5});
  CHECK(check_route_messages(notifies[0].messages) == Value{std::string("jack")});
  CHECK(check_route_messages(notifies[1].messages) == Value{Null{}});
  CHECK(check_route_messages(notifies[2].messages) ==
        Value{std::string("J\xc3\xa4" "ck.Doe@Example.com")});
  for (const auto& captured : frames) CHECK(captured.type.find("DISCONNECT") == std::string::npos);
}

// Replays each captured connection through a Session. The application part (which actions to
// put in an ACK) is taken from the reference agent's captured ACK for the same ids; everything
// else (AGENT-HELLO, ACK framing, AGENT-DISCONNECT) is ours and must match byte for byte.
TEST_CASE("captures: a Session answers every connection as the reference agent did", "[golden][session]") {
  const std::string file = GENERATE(from_range(spop_test::capture_files));
  const auto frames = load_capture(file);
  for (const int connection : connections_of(frames)) {
    CAPTURE(file, connection);
    std::map<std::pair<std::uint64_t, std::uint64_t>, std::vector<Action>> reference_actions;
    std::vector<std::string> expected;
    for (const auto& captured : frames) {
      if (captured.connection != connection || captured.direction != "A>H") continue;
      expected.push_back(to_hex(captured.bytes));
      if (captured.type != "ACK") continue;
      const auto frame = spop_test::decode_whole(captured.bytes);
      reference_actions[{frame.header.stream_id, frame.header.frame_id}] = spop_test::value_of(decode_actions(frame.payload));
    }

    Session session;
    std::vector<std::string> ours;
    bool saw_disconnect = false;
    for (const auto& captured : frames) {
      if (captured.connection != connection || captured.direction != "H>A") continue;
      CAPTURE(captured.line);
      REQUIRE(session.state() != SessionState::closing);
      auto result = session.feed(captured.bytes);
      CHECK(result.consumed == captured.bytes.size());
      for (const auto& write : result.writes) ours.push_back(to_hex(write));
      for (const auto& notify : result.notifies) {
        const auto actions = reference_actions.find({notify.stream_id, notify.frame_id});
        REQUIRE(actions != reference_actions.end());
        ours.push_back(to_hex(session.encode_ack(notify.stream_id, notify.frame_id, actions->second).frame));
      }
      saw_disconnect = captured.type == "HAPROXY-DISCONNECT";
      CHECK(result.close == saw_disconnect);
    }
    CHECK(ours == expected);

    const bool health_check = connection <= 3;
    CHECK(session.is_health_check() == health_check);
    CHECK(session.max_frame_size() == 16380);
    if (health_check || saw_disconnect) {
      CHECK(session.state() == SessionState::closing);
    } else {
      CHECK(session.state() == SessionState::processing);
    }
  }
}
