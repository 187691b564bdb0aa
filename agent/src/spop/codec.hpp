// SPOP wire codec, sans I/O: HAProxy varints, typed data, frames and their three payload kinds
// (KV lists, NOTIFY messages, ACK actions), in both directions. Decoders never throw on input
// bytes (only std::bad_alloc can escape): they return Result values whose errors are CodecError
// codes, and every length read from the wire is checked against the bytes that remain. An
// incomplete frame is not an error: split_frame reports it as "need more".
//
// Encoders append to a caller-owned buffer, so that several frames can share one allocation.
#pragma once

#include "spop/types.hpp"

#include <boost/system/result.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

namespace director::spop {

using Bytes = std::vector<std::uint8_t>;  // same alias as in session.hpp

// Why bytes could not be decoded.
enum class CodecError {
  truncated = 1,          // a field runs past the end of its frame or payload
  varint_overflow,        // a varint whose value does not fit in 64 bits
  unknown_data_type,      // typed data of type 10 to 15
  out_of_range,           // INT32/UINT32 value outside its type, or a variable scope above 4
  unknown_action,         // an ACK action other than set-var (1) and unset-var (2)
  bad_argument_count,     // an action with the wrong NB-ARGS (set-var 3, unset-var 2)
  frame_too_big,          // a frame length above the allowed max-frame-size
  missing_key,            // a mandatory KV item is absent (see decode_disconnect)
  wrong_value_type,       // a KV item has a value of the wrong type
  too_many_arguments,     // encoding a message of more than 255 arguments (NB-ARGS is one byte)
};

const std::error_category& codec_category() noexcept;
std::error_code make_error_code(CodecError error) noexcept;

}  // namespace director::spop

template <>
struct std::is_error_code_enum<director::spop::CodecError> : std::true_type {};

namespace director::spop {

// A decoded value or the std::error_code (codec_category) saying why there is none.
template <class T>
using Result = boost::system::result<T, std::error_code>;

// ---------------------------------------------------------------------------------------------
// Primitives

// Bytes a varint takes on the wire: 1 for values below 240, up to 10 for 2^64-1.
std::size_t varint_size(std::uint64_t value) noexcept;

// A bounded cursor over bytes being decoded. Each read either succeeds and advances, or fails
// and leaves the position unchanged.
class ByteReader {
 public:
  explicit ByteReader(std::span<const std::uint8_t> bytes) noexcept : rest_(bytes) {}

  bool empty() const noexcept { return rest_.empty(); }
  std::size_t remaining() const noexcept { return rest_.size(); }
  std::span<const std::uint8_t> rest() const noexcept { return rest_; }

  Result<std::uint8_t> read_u8() noexcept;
  Result<std::uint32_t> read_u32_be() noexcept;
  // HAProxy's varint (not LEB128). Values that do not fit in 64 bits are rejected, which makes
  // every accepted encoding the canonical one.
  Result<std::uint64_t> read_varint() noexcept;
  Result<std::span<const std::uint8_t>> read_bytes(std::uint64_t count) noexcept;
  // A STRING without its type byte: varint length, then the bytes (no terminator, any bytes).
  Result<std::string_view> read_string() noexcept;
  // Typed data: type in the low nibble, flags in the high nibble. BOOL is true when flag bit 0
  // (0x10) is set; flags of the other types are ignored, as HAProxy does. INT32 is read as
  // HAProxy writes it, a 64-bit two's complement varint, and must fit in 32 bits.
  Result<Value> read_value();

 private:
  std::span<const std::uint8_t> rest_;
};

void append_varint(Bytes& out, std::uint64_t value);
// A STRING without its type byte (KV names, message names, argument names, variable names).
void append_string(Bytes& out, std::string_view bytes);
// Typed data. BOOL true is 0x11, false 0x01; INT32 and INT64 are written as 64-bit two's
// complement varints, which HAProxy reads back as signed integers.
void append_value(Bytes& out, const Value& value);

// ---------------------------------------------------------------------------------------------
// Frames: <length:4 BE> <type:1> <flags:4 BE> <stream-id:varint> <frame-id:varint> <payload>

inline constexpr std::size_t frame_length_size = 4;  // the length prefix, not counted in it

struct FrameHeader {
  FrameType type = FrameType::fragment;  // may hold a value outside the enumerators
  std::uint32_t flags = flag_fin;
  std::uint64_t stream_id = 0;
  std::uint64_t frame_id = 0;
  bool operator==(const FrameHeader&) const = default;
};

// A decoded frame header and its still encoded payload, viewing the caller's bytes.
struct FrameView {
  FrameHeader header;
  std::span<const std::uint8_t> payload;
};

// Where the first frame of a byte stream lies.
struct SplitFrame {
  bool complete = false;               // false: need more bytes (not an error)
  std::span<const std::uint8_t> body;  // when complete: the frame after its length prefix

  // Bytes of the stream the frame takes, length prefix included; 0 while incomplete.
  std::size_t wire_size() const noexcept { return complete ? frame_length_size + body.size() : 0; }
};

// Finds the first frame of `stream`. Fails with frame_too_big as soon as the 4-byte length
// announces more than `max_frame_size`, so a caller never buffers more than
// frame_length_size + max_frame_size bytes. A zero length yields an empty body, which
// decode_frame rejects.
Result<SplitFrame> split_frame(std::span<const std::uint8_t> stream,
                               std::uint32_t max_frame_size) noexcept;

// Decodes the header of a frame body (the bytes after the length prefix).
Result<FrameView> decode_frame(std::span<const std::uint8_t> body) noexcept;

// Decodes one whole frame, length prefix included, which must span exactly `frame` (a length
// that disagrees with the size of `frame` is reported as truncated). For captured frames and
// tests; streams go through split_frame.
Result<FrameView> decode_whole_frame(std::span<const std::uint8_t> frame) noexcept;

// Writes a frame with `payload` to the end of `out`.
void append_frame(Bytes& out, const FrameHeader& header, std::span<const std::uint8_t> payload);

// Builds a frame in place: begin_frame writes the header behind a length placeholder and
// returns where the frame starts; the caller appends the payload; end_frame fills the length.
// Precondition: the frame stays below 4 GiB.
std::size_t begin_frame(Bytes& out, const FrameHeader& header);
void end_frame(Bytes& out, std::size_t frame_start) noexcept;

// ---------------------------------------------------------------------------------------------
// Payloads

// A KV list (HELLO and DISCONNECT payloads); a message's arguments share the same layout.
using KvList = std::vector<Argument>;

Result<KvList> decode_kv_list(std::span<const std::uint8_t> payload);
// The value of the first item whose name equals `key` exactly (no prefix matching), or null.
const Value* find_value(const KvList& items, std::string_view key) noexcept;
void append_kv_list(Bytes& out, std::span<const Argument> items);

// NOTIFY payload: messages, each a name, a one-byte argument count, named typed arguments.
// The count being one byte, a message carries at most 255 arguments: append_messages fails with
// too_many_arguments for a message with more, and then leaves `out` as it was.
Result<std::vector<Message>> decode_messages(std::span<const std::uint8_t> payload);
Result<void> append_messages(Bytes& out, std::span<const Message> messages);

// ACK payload: set-var `01 03 <scope> <name> <value>`, unset-var `02 02 <scope> <name>`.
Result<std::vector<Action>> decode_actions(std::span<const std::uint8_t> payload);
void append_actions(Bytes& out, std::span<const Action> actions);

// A DISCONNECT payload (DisconnectInfo, types.hpp).
// Requires "status-code" (UINT32) and "message" (STRING).
Result<DisconnectInfo> decode_disconnect(std::span<const std::uint8_t> payload);

// ---------------------------------------------------------------------------------------------
// Whole frames, as each side sends them (FIN set; HELLO and DISCONNECT use ids 0).

// HAProxy side: for conformance checkers and load generators.
void append_haproxy_hello(Bytes& out, std::span<const Argument> items);
void append_haproxy_disconnect(Bytes& out, Status status, std::string_view message);
// Fails like append_messages (too_many_arguments), leaving `out` as it was.
Result<void> append_notify(Bytes& out, std::uint64_t stream_id, std::uint64_t frame_id,
                           std::span<const Message> messages);

// Agent side. AGENT-HELLO items in this order: version, max-frame-size (UINT32), capabilities.
void append_agent_hello(Bytes& out, std::string_view version, std::uint32_t max_frame_size,
                        std::string_view capabilities);
void append_agent_disconnect(Bytes& out, Status status, std::string_view message);
// Encodes `actions` as given, even none; Session::encode_ack applies the agent's ACK policy.
void append_ack(Bytes& out, std::uint64_t stream_id, std::uint64_t frame_id,
                std::span<const Action> actions);

// ---------------------------------------------------------------------------------------------
// Names

// The frame type as the SPOE spec and the capture files spell it ("HAPROXY-HELLO", "ACK", ...,
// "UNSET" for 0, "UNKNOWN" for values outside the enumeration).
std::string_view to_string(FrameType type) noexcept;
// A short description of a DISCONNECT status ("normal" for Status::normal).
std::string_view describe(Status status) noexcept;

}  // namespace director::spop
