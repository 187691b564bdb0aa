// SPOP (HAProxy Stream Processing Offload Protocol) vocabulary shared by the codec, the session
// state machine and the layers above them. Pure values: no I/O, no allocation beyond strings.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace director::spop {

enum class FrameType : std::uint8_t {
  fragment = 0,  // continuation of a fragmented frame (never supported by this agent)
  haproxy_hello = 1,
  haproxy_disconnect = 2,
  notify = 3,
  agent_hello = 101,
  agent_disconnect = 102,
  ack = 103,
};

// Frame flags (4 bytes, big-endian on the wire).
inline constexpr std::uint32_t flag_fin = 0x1;
inline constexpr std::uint32_t flag_abort = 0x2;

// DISCONNECT status codes (SPOE.txt section 3.2.8 / HAProxy spoe-t.h).
enum class Status : std::uint32_t {
  normal = 0,
  io_error = 1,
  timeout = 2,
  frame_too_big = 3,
  invalid_frame = 4,
  no_version = 5,
  no_max_frame_size = 6,
  no_capabilities = 7,
  bad_version = 8,
  bad_max_frame_size = 9,
  fragmentation_not_supported = 10,
  interlaced_frames = 11,
  frame_id_not_found = 12,
  resource_allocation = 13,
  unknown = 99,
};

// Typed data (type in the low nibble of the type byte, flags in the high nibble).
enum class DataType : std::uint8_t {
  null = 0, boolean = 1, int32 = 2, uint32 = 3, int64 = 4, uint64 = 5,
  ipv4 = 6, ipv6 = 7, string = 8, binary = 9,
};

struct Null { bool operator==(const Null&) const = default; };
struct Ipv4 { std::array<std::uint8_t, 4> bytes{}; bool operator==(const Ipv4&) const = default; };
struct Ipv6 { std::array<std::uint8_t, 16> bytes{}; bool operator==(const Ipv6&) const = default; };
struct Binary { std::string bytes; bool operator==(const Binary&) const = default; };

// One SPOP typed value. std::string is the STRING type (raw bytes, not necessarily UTF-8).
using Value = std::variant<Null, bool, std::int32_t, std::uint32_t, std::int64_t, std::uint64_t,
                           Ipv4, Ipv6, std::string, Binary>;

struct Argument {
  std::string name;  // may be empty
  Value value;
  bool operator==(const Argument&) const = default;
};

struct Message {
  std::string name;
  std::vector<Argument> arguments;
  bool operator==(const Message&) const = default;
};

// Variable scopes as encoded in set-var/unset-var actions.
enum class Scope : std::uint8_t { process = 0, session = 1, transaction = 2, request = 3, response = 4 };

struct SetVar {
  Scope scope;
  std::string name;  // without HAProxy's var-prefix: HAProxy prepends "<scope>.<prefix>."
  Value value;
  bool operator==(const SetVar&) const = default;
};

struct UnsetVar {
  Scope scope;
  std::string name;
  bool operator==(const UnsetVar&) const = default;
};

using Action = std::variant<SetVar, UnsetVar>;

// What a DISCONNECT frame says (SPOE.txt 3.2.8, 3.2.9). The status code is kept raw: peers may
// define their own codes.
struct DisconnectInfo {
  std::uint32_t status_code = 0;
  std::string message;
  bool operator==(const DisconnectInfo&) const = default;
};

}  // namespace director::spop
