// Shared by the SPOP libFuzzer targets in this directory (docs/fuzzing.md): FUZZ_CHECK (an
// invariant check that survives NDEBUG), and small helpers to build frames around fuzzed payloads.
#pragma once

#include "fuzz_check.hpp"
#include "spop/codec.hpp"
#include "spop/session.hpp"

#include <cstdint>
#include <span>
#include <string_view>

namespace fuzz {

using director::spop::Bytes;

inline std::span<const std::uint8_t> as_bytes(const std::uint8_t* data, std::size_t size) {
  return {data, size};
}

inline std::string_view as_chars(std::span<const std::uint8_t> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// A whole frame (length prefix included) with `payload` behind `header`.
inline Bytes make_frame(const director::spop::FrameHeader& header, std::span<const std::uint8_t> payload) {
  Bytes frame;
  frame.reserve(payload.size() + 32);
  director::spop::append_frame(frame, header, payload);
  return frame;
}

// A HAPROXY-HELLO as HAProxy 2.6 sends it (pipelining, max-frame-size 16380).
inline Bytes haproxy_hello(std::uint32_t max_frame_size = 16380) {
  using director::spop::Argument;
  const Argument items[] = {
      {"supported-versions", std::string("2.0")},
      {"max-frame-size", max_frame_size},
      {"capabilities", std::string("pipelining,async")},
  };
  Bytes frame;
  director::spop::append_haproxy_hello(frame, items);
  return frame;
}

}  // namespace fuzz
