// libFuzzer target: NOTIFY decoding, and the way the server answers a NOTIFY.
//
// Input: a NOTIFY payload (messages after the frame header; seeds: the captured ones). The first
// byte picks the stream-id/frame-id pair and the frame-size limit; the rest is the payload.
// Checks, after a captured HELLO:
// - the Session yields exactly the messages decode_messages decodes, with the ids echoed, or
//   AGENT-DISCONNECT (invalid-frame; frame-too-big beyond the negotiated size) and nothing else;
// - the server's path for it (route/route_handler: find_route_request, the username scheme in
//   both modes, to_actions with the refused name, Session::encode_ack) yields one ACK that
//   decodes, echoes the ids, fits the negotiated max-frame-size and carries the actions (or the
//   placeholder action when they do not fit).
#include "fuzz_support.hpp"

#include "decision/username.hpp"
#include "route/route_handler.hpp"
#include "spop/codec.hpp"
#include "spop/session.hpp"

#include <boost/asio/ip/address_v4.hpp>

#include <limits>
#include <string>
#include <vector>

using namespace director::spop;
namespace decision = director::decision;
namespace route = director::route;

namespace {

void check_ack(const Session& session, const Bytes& ack, std::uint64_t stream_id, std::uint64_t frame_id,
               const std::vector<Action>& actions) {
  auto frame = decode_whole_frame(ack);
  FUZZ_CHECK(frame.has_value());
  FUZZ_CHECK(frame->header.type == FrameType::ack);
  FUZZ_CHECK(frame->header.flags == flag_fin);
  FUZZ_CHECK(frame->header.stream_id == stream_id && frame->header.frame_id == frame_id);
  FUZZ_CHECK(ack.size() - frame_length_size <= session.max_frame_size());
  auto decoded = decode_actions(frame->payload);
  FUZZ_CHECK(decoded.has_value() && !decoded->empty());
  if (*decoded != actions) {
    // Only the placeholder may replace the actions, and only when they did not fit.
    const std::vector<Action> placeholder = {SetVar{Scope::transaction, "unhandled", true}};
    FUZZ_CHECK(*decoded == placeholder);
    Bytes full;
    append_ack(full, stream_id, frame_id, actions);
    FUZZ_CHECK(actions.empty() || full.size() - frame_length_size > session.max_frame_size());
  }
}

// What connection.cpp does with a decoded NOTIFY, the I/O and the cache left out: the answer
// is the one a check would produce for the mapped username.
void answer(const Session& session, const Notify& notify) {
  const auto request = route::find_route_request(notify);
  if (!request) {
    check_ack(session, session.encode_ack(notify.stream_id, notify.frame_id, {}).frame, notify.stream_id,
              notify.frame_id, {});
    return;
  }
  for (const auto mode : {decision::UsernameMode::strict, decision::UsernameMode::escape}) {
    decision::Answer result;
    result.reason = decision::Reason::missing_username;
    if (request->username && !request->username->empty()) {
      auto label = decision::map_username(*request->username, mode, "vscode");
      if (label) {
        result.alive = true;
        result.reason = decision::Reason::ok;
        result.label = *label;
        result.host = "vscode-" + *label;
        result.address = boost::asio::ip::make_address_v4("10.1.2.3");
        result.port = 8080;
      } else {
        result.reason = decision::Reason::invalid_username;
      }
    }
    const auto actions = route::to_actions(result, request->username);
    check_ack(session, session.encode_ack(notify.stream_id, notify.frame_id, actions).frame, notify.stream_id,
              notify.frame_id, actions);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t control = data[0];
  const auto payload = fuzz::as_bytes(data + 1, size - 1);

  // 2.6 numbers streams globally (0 happens), 3.x per connection; ids can be any varint.
  static constexpr std::uint64_t stream_ids[] = {0, 1, 239, 240, 16380, std::numeric_limits<std::uint64_t>::max()};
  static constexpr std::uint64_t frame_ids[] = {1, 0, 2, std::numeric_limits<std::uint64_t>::max()};
  const auto stream_id = stream_ids[(control & 0x07) % std::size(stream_ids)];
  const auto frame_id = frame_ids[(control >> 3) & 0x03];
  const std::uint32_t haproxy_max_frame_size = (control & 0x20) != 0 ? 256 : 16380;

  Session session;
  const auto hello = session.feed(fuzz::haproxy_hello(haproxy_max_frame_size));
  FUZZ_CHECK(!hello.close && session.state() == SessionState::processing);
  FUZZ_CHECK(session.max_frame_size() == haproxy_max_frame_size);

  const Bytes frame = fuzz::make_frame(FrameHeader{FrameType::notify, flag_fin, stream_id, frame_id}, payload);
  const auto result = session.feed(frame);
  if (frame.size() - frame_length_size > session.max_frame_size()) {
    FUZZ_CHECK(result.close && result.consumed == 0 && result.notifies.empty());
    FUZZ_CHECK(session.error_status() == Status::frame_too_big);
    return 0;
  }
  FUZZ_CHECK(result.consumed == frame.size());

  auto messages = decode_messages(payload);
  if (!messages) {
    FUZZ_CHECK(result.close && result.notifies.empty() && result.writes.size() == 1);
    FUZZ_CHECK(session.error_status() == Status::invalid_frame);
    auto disconnect = decode_whole_frame(result.writes[0]);
    FUZZ_CHECK(disconnect && disconnect->header.type == FrameType::agent_disconnect);
    return 0;
  }
  FUZZ_CHECK(!result.close && result.writes.empty() && result.notifies.size() == 1);
  const Notify& notify = result.notifies[0];
  FUZZ_CHECK(notify.stream_id == stream_id && notify.frame_id == frame_id);
  FUZZ_CHECK(notify.messages == *messages);
  answer(session, notify);
  return 0;
}
