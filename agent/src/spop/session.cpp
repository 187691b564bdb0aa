#include "spop/session.hpp"

#include "spop/codec.hpp"

#include <algorithm>
#include <charconv>
#include <optional>
#include <string>
#include <utility>

namespace director::spop {
namespace {

constexpr std::uint32_t smallest_max_frame_size = 256;  // SPOE.txt 3.2: peers support at least this
constexpr std::string_view our_version = "2.0";
constexpr std::string_view pipelining = "pipelining";
// Keeps every AGENT-DISCONNECT within the smallest max-frame-size.
constexpr std::size_t max_disconnect_message_size = 200;

std::string_view trim_spaces(std::string_view text) noexcept {
  const auto first = text.find_first_not_of(" \t");
  if (first == std::string_view::npos) return {};
  const auto last = text.find_last_not_of(" \t");
  return text.substr(first, last - first + 1);
}

// Calls `visit(item)` for each item of a comma-separated list, spaces around items removed,
// until `visit` returns true. Returns whether it did.
template <class Visit>
bool any_list_item(std::string_view list, Visit visit) {
  for (;;) {
    const auto comma = list.find(',');
    if (visit(trim_spaces(list.substr(0, comma)))) return true;
    if (comma == std::string_view::npos) return false;
    list.remove_prefix(comma + 1);
  }
}

bool is_digits(std::string_view text) noexcept {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// "Major.Minor" with major 2: announcing 2.x means supporting 2.0 (SPOE.txt 3.2.4).
bool is_version_2(std::string_view version) noexcept {
  const auto dot = version.find('.');
  if (dot == std::string_view::npos) return false;
  const auto major = version.substr(0, dot);
  if (!is_digits(major) || !is_digits(version.substr(dot + 1))) return false;
  unsigned number = 0;
  const auto [end, error] = std::from_chars(major.data(), major.data() + major.size(), number);
  return error == std::errc{} && end == major.data() + major.size() && number == 2;
}

// max-frame-size may come as any integer type; negative values count as 0 (too small).
std::optional<std::uint64_t> as_size(const Value& value) noexcept {
  if (const auto* number = std::get_if<std::uint32_t>(&value)) return *number;
  if (const auto* number = std::get_if<std::uint64_t>(&value)) return *number;
  if (const auto* number = std::get_if<std::int32_t>(&value)) return *number < 0 ? 0 : static_cast<std::uint64_t>(*number);
  if (const auto* number = std::get_if<std::int64_t>(&value)) return *number < 0 ? 0 : static_cast<std::uint64_t>(*number);
  return std::nullopt;
}

}  // namespace

Session::Session(SessionLimits limits)
    : our_max_frame_size_(std::max(limits.max_frame_size, smallest_max_frame_size)),
      max_frame_size_(our_max_frame_size_) {}

FeedResult Session::feed(std::span<const std::uint8_t> input) {
  FeedResult result;
  while (state_ != SessionState::closing) {
    const auto rest = input.subspan(result.consumed);
    auto next = split_frame(rest, max_frame_size_);
    if (!next) {
      ++frames_seen_;
      current_header_.reset();
      // split_frame fails only once it has read the 4-byte length.
      const auto length = ByteReader(rest).read_u32_be();
      fail(result, Status::frame_too_big,
           std::string(describe(Status::frame_too_big)) + ": length " + std::to_string(length ? *length : 0) +
               " above max-frame-size " + std::to_string(max_frame_size_));
      break;
    }
    if (!next->complete) break;
    ++frames_seen_;
    current_header_.reset();
    result.consumed += next->wire_size();
    handle_frame(next->body, result);
  }
  return result;
}

void Session::handle_frame(std::span<const std::uint8_t> body, FeedResult& result) {
  auto frame = decode_frame(body);
  if (!frame) return fail(result, Status::invalid_frame, "malformed frame header: " + frame.error().message());
  const FrameHeader& header = frame->header;
  current_header_ = header;
  // This agent never announces fragmentation; ABORT alone is meaningless on whole frames.
  if (header.type == FrameType::fragment || (header.flags & flag_fin) == 0) {
    return fail(result, Status::fragmentation_not_supported, describe(Status::fragmentation_not_supported));
  }

  switch (header.type) {
    case FrameType::haproxy_hello:
      if (state_ != SessionState::awaiting_hello) return fail(result, Status::invalid_frame, "second HAPROXY-HELLO");
      return handle_hello(frame->payload, result);

    case FrameType::notify: {
      if (state_ != SessionState::processing) return fail(result, Status::invalid_frame, "NOTIFY before HELLO");
      auto messages = decode_messages(frame->payload);
      if (!messages) return fail(result, Status::invalid_frame, "malformed NOTIFY: " + messages.error().message());
      result.notifies.push_back(Notify{header.stream_id, header.frame_id, std::move(*messages)});
      return;
    }

    case FrameType::haproxy_disconnect: {
      auto info = decode_disconnect(frame->payload);
      if (!info) {
        return fail(result, Status::invalid_frame, "malformed HAPROXY-DISCONNECT: " + info.error().message());
      }
      return end_on_haproxy_disconnect(result, std::move(*info));
    }

    default:
      return fail(result, Status::invalid_frame,
                  "unexpected frame type " + std::to_string(static_cast<unsigned>(header.type)) + " (" +
                      std::string(to_string(header.type)) + ")");
  }
}

void Session::handle_hello(std::span<const std::uint8_t> payload, FeedResult& result) {
  auto items = decode_kv_list(payload);
  if (!items) return fail(result, Status::invalid_frame, "malformed HAPROXY-HELLO: " + items.error().message());

  const Value* versions = find_value(*items, "supported-versions");
  if (versions == nullptr) return fail(result, Status::no_version, describe(Status::no_version));
  const auto* version_list = std::get_if<std::string>(versions);
  if (version_list == nullptr) return fail(result, Status::invalid_frame, "supported-versions is not a string");
  if (!any_list_item(*version_list, is_version_2)) return fail(result, Status::bad_version, describe(Status::bad_version));

  const Value* size = find_value(*items, "max-frame-size");
  if (size == nullptr) return fail(result, Status::no_max_frame_size, describe(Status::no_max_frame_size));
  const auto peer_max_frame_size = as_size(*size);
  if (!peer_max_frame_size) return fail(result, Status::invalid_frame, "max-frame-size is not an integer");
  if (*peer_max_frame_size < smallest_max_frame_size) {
    return fail(result, Status::bad_max_frame_size, describe(Status::bad_max_frame_size));
  }

  const Value* capabilities = find_value(*items, "capabilities");
  if (capabilities == nullptr) return fail(result, Status::no_capabilities, describe(Status::no_capabilities));
  const auto* capability_list = std::get_if<std::string>(capabilities);
  if (capability_list == nullptr) return fail(result, Status::invalid_frame, "capabilities is not a string");

  if (const Value* health_check = find_value(*items, "healthcheck")) {
    const auto* flag = std::get_if<bool>(health_check);
    if (flag == nullptr) return fail(result, Status::invalid_frame, "healthcheck is not a boolean");
    health_check_ = *flag;
  }

  max_frame_size_ = static_cast<std::uint32_t>(std::min<std::uint64_t>(*peer_max_frame_size, our_max_frame_size_));
  const bool peer_pipelines = any_list_item(*capability_list, [](std::string_view item) { return item == pipelining; });
  Bytes hello;
  append_agent_hello(hello, our_version, max_frame_size_, peer_pipelines ? pipelining : std::string_view{});
  result.writes.push_back(std::move(hello));
  // A health check ends with the AGENT-HELLO: HAProxy closes the connection.
  state_ = health_check_ ? SessionState::closing : SessionState::processing;
}

void Session::fail(FeedResult& result, Status status, std::string_view message) {
  error_status_ = status;
  ProtocolError error{status, std::string(message), frames_seen_, std::nullopt, 0, 0};
  if (current_header_) {
    error.frame_type = current_header_->type;
    error.stream_id = current_header_->stream_id;
    error.frame_id = current_header_->frame_id;
  }
  result.error = std::move(error);
  result.writes.push_back(disconnect(status, message));
  result.close = true;
}

void Session::end_on_haproxy_disconnect(FeedResult& result, DisconnectInfo info) {
  result.haproxy_disconnect = std::move(info);
  result.writes.push_back(disconnect(Status::normal, describe(Status::normal)));
  result.close = true;
}

EncodedAck Session::encode_ack(std::uint64_t stream_id, std::uint64_t frame_id, std::span<const Action> actions) const {
  EncodedAck ack;
  ack.frame.reserve(128);
  if (!actions.empty()) {
    append_ack(ack.frame, stream_id, frame_id, actions);
    if (ack.frame.size() - frame_length_size <= max_frame_size_) return ack;
    ack.frame.clear();
    ack.actions_dropped = true;
  }
  const Action placeholder[] = {SetVar{Scope::transaction, "unhandled", true}};
  append_ack(ack.frame, stream_id, frame_id, placeholder);
  return ack;
}

Bytes Session::disconnect(Status status, std::string_view message) {
  Bytes frame;
  append_agent_disconnect(frame, status, message.substr(0, max_disconnect_message_size));
  state_ = SessionState::closing;
  return frame;
}

SessionState Session::state() const noexcept { return state_; }

std::uint32_t Session::max_frame_size() const noexcept { return max_frame_size_; }

std::size_t Session::max_buffered_bytes() const noexcept { return frame_length_size + max_frame_size_; }

bool Session::is_health_check() const noexcept { return health_check_; }

std::optional<Status> Session::error_status() const noexcept { return error_status_; }

}  // namespace director::spop
