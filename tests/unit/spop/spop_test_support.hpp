// Helpers shared by the SPOP tests: hex, the golden capture files, frame builders and a driver
// that feeds a Session the way a connection does (unconsumed bytes stay buffered).
#pragma once

#include "spop/codec.hpp"
#include "spop/session.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace spop_test {

using director::spop::Bytes;

inline Bytes from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0) throw std::invalid_argument("odd hex length");
  const auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    throw std::invalid_argument("not a hex digit");
  };
  Bytes bytes;
  bytes.reserve(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    bytes.push_back(static_cast<std::uint8_t>(nibble(hex[i]) << 4 | nibble(hex[i + 1])));
  }
  return bytes;
}

inline std::string to_hex(std::span<const std::uint8_t> bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(bytes.size() * 2);
  for (const auto byte : bytes) {
    hex.push_back(digits[byte >> 4]);
    hex.push_back(digits[byte & 0x0F]);
  }
  return hex;
}

// One line of a capture file: `<connection#> <direction> <frame type> <hex>`.
struct CapturedFrame {
  int connection = 0;
  std::string direction;  // "H>A" (HAProxy to agent) or "A>H"
  std::string type;       // as the SPOE spec spells it, e.g. "HAPROXY-HELLO"
  Bytes bytes;            // the whole frame, length prefix included
  int line = 0;
};

inline constexpr std::array<const char*, 2> capture_files = {"haproxy-2.6.12.frames", "haproxy-3.5-dev5.frames"};

inline std::vector<CapturedFrame> load_capture(const std::string& file_name) {
  const std::string path = std::string(DIRECTOR_TEST_DATA_DIR) + "/spop-captures/" + file_name;
  std::ifstream file(path);
  if (!file) throw std::runtime_error("cannot open " + path);
  std::vector<CapturedFrame> frames;
  std::string text;
  int line_number = 0;
  while (std::getline(file, text)) {
    ++line_number;
    if (text.empty()) continue;
    std::istringstream fields(text);
    CapturedFrame frame;
    std::string hex;
    if (!(fields >> frame.connection >> frame.direction >> frame.type >> hex)) {
      throw std::runtime_error(path + ": bad line " + std::to_string(line_number));
    }
    frame.bytes = from_hex(hex);
    frame.line = line_number;
    frames.push_back(std::move(frame));
  }
  return frames;
}

// The value of a decoding result, failing the test (rather than crashing) when there is none.
template <class T>
T value_of(director::spop::Result<T> result) {
  REQUIRE(result.has_value());
  return std::move(*result);
}

inline director::spop::FrameView decode_whole(std::span<const std::uint8_t> frame) {
  auto view = director::spop::decode_whole_frame(frame);
  REQUIRE(view.has_value());
  return *view;
}

// The status code of an AGENT-DISCONNECT frame; fails the test for any other frame.
inline std::uint32_t disconnect_status(const Bytes& frame) {
  const auto view = decode_whole(frame);
  REQUIRE(view.header.type == director::spop::FrameType::agent_disconnect);
  auto info = director::spop::decode_disconnect(view.payload);
  REQUIRE(info.has_value());
  return info->status_code;
}

// A HAPROXY-HELLO item list as HAProxy 2.6 sends it for traffic (not for health checks).
inline director::spop::KvList standard_hello_items(std::uint32_t max_frame_size = 16380) {
  using director::spop::Argument;
  return {Argument{"supported-versions", std::string("2.0")},
          Argument{"max-frame-size", max_frame_size},
          Argument{"capabilities", std::string("pipelining,async")},
          Argument{"engine-id", std::string("d0377a2c-b165-4239-9cc3-3a0f56951e90")}};
}

inline Bytes hello_frame(const director::spop::KvList& items) {
  Bytes frame;
  director::spop::append_haproxy_hello(frame, items);
  return frame;
}

inline Bytes notify_frame(std::uint64_t stream_id, std::uint64_t frame_id,
                          const std::vector<director::spop::Message>& messages) {
  Bytes frame;
  director::spop::append_notify(frame, stream_id, frame_id, messages);
  return frame;
}

inline std::vector<director::spop::Message> route_messages(const std::string& user) {
  using namespace director::spop;
  return {Message{"route", {Argument{"user", user}, Argument{"host", std::string("127.0.0.1:18300")},
                            Argument{"src", Ipv4{{127, 0, 0, 1}}}, Argument{"method", std::string("GET")}}},
          Message{"check-client-ip", {Argument{"ip", Ipv4{{127, 0, 0, 1}}}}}};
}

inline Bytes concat(std::initializer_list<std::span<const std::uint8_t>> parts) {
  Bytes all;
  for (const auto part : parts) all.insert(all.end(), part.begin(), part.end());
  return all;
}

// A Notify as a comparable value.
struct NotifyRecord {
  std::uint64_t stream_id = 0;
  std::uint64_t frame_id = 0;
  std::vector<director::spop::Message> messages;
  bool operator==(const NotifyRecord&) const = default;
};

// Everything a Session produced over several feed calls.
struct Transcript {
  std::vector<std::string> writes_hex;
  std::vector<NotifyRecord> notifies;
  bool close = false;
  std::size_t consumed = 0;  // bytes of the stream the session consumed in all
  bool operator==(const Transcript&) const = default;
};

// Feeds `stream` cut at `cuts` (increasing offsets), the way a connection does: each read is
// appended to what the session left unconsumed. Stops feeding once the session asks to close.
inline Transcript feed_in_pieces(director::spop::Session& session, std::span<const std::uint8_t> stream,
                                 const std::vector<std::size_t>& cuts) {
  Transcript transcript;
  Bytes buffer;
  std::size_t start = 0;
  auto pieces = cuts;
  pieces.push_back(stream.size());
  for (const auto end : pieces) {
    if (transcript.close) break;
    buffer.insert(buffer.end(), stream.begin() + static_cast<std::ptrdiff_t>(start),
                  stream.begin() + static_cast<std::ptrdiff_t>(end));
    start = end;
    auto result = session.feed(buffer);
    REQUIRE(result.consumed <= buffer.size());
    transcript.consumed += result.consumed;
    buffer.erase(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(result.consumed));
    for (const auto& write : result.writes) transcript.writes_hex.push_back(to_hex(write));
    for (auto& notify : result.notifies) {
      transcript.notifies.push_back({notify.stream_id, notify.frame_id, std::move(notify.messages)});
    }
    transcript.close = result.close;
  }
  return transcript;
}

inline Transcript feed_whole(director::spop::Session& session, std::span<const std::uint8_t> stream) {
  return feed_in_pieces(session, stream, {});
}

}  // namespace spop_test
