// libFuzzer target: HAPROXY-HELLO decoding and the negotiation a Session answers it with.
//
// Input: a HAPROXY-HELLO payload (the KV list after the frame header; seeds: the captured ones).
// The target frames it, feeds it to a fresh Session and checks the answer against the contract
// in docs/architecture.md and the SPOE specification (/usr/share/doc/haproxy/SPOE.txt.gz,
// sections 3.2.4 HAPROXY-HELLO, 3.2.5 AGENT-HELLO and 3.5 errors), computed independently here:
// - a payload that is not a KV list: AGENT-DISCONNECT invalid-frame;
// - otherwise an AGENT-HELLO exactly when supported-versions has a 2.x item, max-frame-size is
//   an integer >= 256 and capabilities is a string (healthcheck, when present, a boolean);
//   announcing version 2.0, max-frame-size min(HAProxy's, ours), and "pipelining" iff HAProxy
//   listed it as an item (no prefix matching);
// - every answer is one frame that decodes, within the smallest max-frame-size (256).
// Then, while processing, a captured NOTIFY is accepted and a HAPROXY-DISCONNECT is answered.
#include "fuzz_support.hpp"

#include "spop/codec.hpp"
#include "spop/session.hpp"

#include <algorithm>
#include <optional>
#include <string>
#include <string_view>

using namespace director::spop;

namespace {

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

template <class Predicate>
bool any_item(std::string_view list, Predicate predicate) {
  std::size_t start = 0;
  while (true) {
    const auto comma = list.find(',', start);
    const auto item = trim(list.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
    if (predicate(item)) return true;
    if (comma == std::string_view::npos) return false;
    start = comma + 1;
  }
}

// "2.<digits>" with any number of leading zeros in the major ("02.0" is 2.0).
bool is_version_2(std::string_view version) {
  const auto dot = version.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot + 1 == version.size()) return false;
  const auto major = version.substr(0, dot);
  const auto minor = version.substr(dot + 1);
  const auto digits = [](std::string_view text) {
    return std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (!digits(major) || !digits(minor)) return false;
  const auto significant = major.find_first_not_of('0');
  return significant != std::string_view::npos && major.substr(significant) == "2";
}

std::optional<std::uint64_t> integer(const Value& value) {
  if (const auto* n = std::get_if<std::uint32_t>(&value)) return *n;
  if (const auto* n = std::get_if<std::uint64_t>(&value)) return *n;
  if (const auto* n = std::get_if<std::int32_t>(&value)) return *n < 0 ? 0 : static_cast<std::uint64_t>(*n);
  if (const auto* n = std::get_if<std::int64_t>(&value)) return *n < 0 ? 0 : static_cast<std::uint64_t>(*n);
  return std::nullopt;
}

struct Expected {
  std::optional<Status> refusal;  // set: AGENT-DISCONNECT with this status
  std::uint64_t peer_max_frame_size = 0;
  bool pipelining = false;
  bool health_check = false;
};

Expected expect(std::span<const std::uint8_t> payload) {
  auto items = decode_kv_list(payload);
  if (!items) return {Status::invalid_frame};
  const Value* versions = find_value(*items, "supported-versions");
  if (versions == nullptr) return {Status::no_version};
  const auto* version_list = std::get_if<std::string>(versions);
  if (version_list == nullptr) return {Status::invalid_frame};
  if (!any_item(*version_list, is_version_2)) return {Status::bad_version};
  const Value* size = find_value(*items, "max-frame-size");
  if (size == nullptr) return {Status::no_max_frame_size};
  const auto peer = integer(*size);
  if (!peer) return {Status::invalid_frame};
  if (*peer < 256) return {Status::bad_max_frame_size};
  const Value* capabilities = find_value(*items, "capabilities");
  if (capabilities == nullptr) return {Status::no_capabilities};
  const auto* capability_list = std::get_if<std::string>(capabilities);
  if (capability_list == nullptr) return {Status::invalid_frame};
  Expected expected;
  if (const Value* health_check = find_value(*items, "healthcheck")) {
    const auto* flag = std::get_if<bool>(health_check);
    if (flag == nullptr) return {Status::invalid_frame};
    expected.health_check = *flag;
  }
  expected.peer_max_frame_size = *peer;
  expected.pipelining = any_item(*capability_list, [](std::string_view item) { return item == "pipelining"; });
  return expected;
}

FrameView only_frame(const Bytes& write) {
  auto frame = decode_whole_frame(write);
  FUZZ_CHECK(frame.has_value());
  return *frame;
}

void check_disconnect(const Bytes& write, Status status) {
  const auto frame = only_frame(write);
  FUZZ_CHECK(frame.header.type == FrameType::agent_disconnect);
  auto info = decode_disconnect(frame.payload);
  FUZZ_CHECK(info && info->status_code == static_cast<std::uint32_t>(status));
  FUZZ_CHECK(write.size() <= frame_length_size + 256);
}

void run(std::span<const std::uint8_t> payload, std::uint32_t our_max_frame_size) {
  Session session(SessionLimits{our_max_frame_size});
  const Bytes frame = fuzz::make_frame(FrameHeader{FrameType::haproxy_hello, flag_fin, 0, 0}, payload);
  const auto result = session.feed(frame);
  const bool too_big = frame.size() - frame_length_size > our_max_frame_size;

  FUZZ_CHECK(result.writes.size() == 1);
  FUZZ_CHECK(result.notifies.empty());
  if (too_big) {
    FUZZ_CHECK(result.close && result.consumed == 0);
    check_disconnect(result.writes[0], Status::frame_too_big);
    return;
  }
  FUZZ_CHECK(result.consumed == frame.size());

  const Expected expected = expect(payload);
  if (expected.refusal) {
    FUZZ_CHECK(result.close);
    FUZZ_CHECK(session.state() == SessionState::closing);
    FUZZ_CHECK(session.error_status() == expected.refusal);
    check_disconnect(result.writes[0], *expected.refusal);
    return;
  }

  FUZZ_CHECK(!result.close);
  FUZZ_CHECK(!session.error_status());
  FUZZ_CHECK(session.is_health_check() == expected.health_check);
  const auto hello = only_frame(result.writes[0]);
  FUZZ_CHECK(hello.header.type == FrameType::agent_hello);
  FUZZ_CHECK(hello.header.flags == flag_fin && hello.header.stream_id == 0 && hello.header.frame_id == 0);
  auto items = decode_kv_list(hello.payload);
  FUZZ_CHECK(items && items->size() == 3);
  const auto negotiated = std::min<std::uint64_t>(expected.peer_max_frame_size, our_max_frame_size);
  FUZZ_CHECK(negotiated >= 256);
  FUZZ_CHECK(session.max_frame_size() == negotiated);
  FUZZ_CHECK((*items)[0] == (Argument{"version", std::string("2.0")}));
  FUZZ_CHECK((*items)[1] == (Argument{"max-frame-size", static_cast<std::uint32_t>(negotiated)}));
  FUZZ_CHECK((*items)[2] == (Argument{"capabilities", std::string(expected.pipelining ? "pipelining" : "")}));
  FUZZ_CHECK(result.writes[0].size() <= frame_length_size + 256);

  if (expected.health_check) {
    FUZZ_CHECK(session.state() == SessionState::closing);
    return;
  }
  FUZZ_CHECK(session.state() == SessionState::processing);

  // A captured 2.6 NOTIFY (route, user "jack") is accepted, then a soft stop is answered.
  Bytes rest;
  const Message route{"route", {{"user", std::string("jack")}}};
  append_notify(rest, 0, 1, std::span(&route, 1));
  append_haproxy_disconnect(rest, Status::normal, "normal");
  const auto after = session.feed(rest);
  FUZZ_CHECK(after.consumed == rest.size());
  FUZZ_CHECK(after.notifies.size() == 1 && after.notifies[0].messages.size() == 1);
  FUZZ_CHECK(after.notifies[0].messages[0] == route);
  FUZZ_CHECK(after.close && after.writes.size() == 1);
  check_disconnect(after.writes[0], Status::normal);
  FUZZ_CHECK(!session.error_status());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto payload = fuzz::as_bytes(data, size);
  run(payload, 16380);  // the default
  run(payload, 256);    // the smallest DIRECTOR_MAX_FRAME_SIZE
  return 0;
}
