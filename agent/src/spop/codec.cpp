#include "spop/codec.hpp"

#include <algorithm>
#include <limits>
#include <string>
#include <type_traits>

namespace director::spop {
namespace {

class CodecCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "spop.codec"; }

  std::string message(int value) const override {
    switch (static_cast<CodecError>(value)) {
      case CodecError::truncated: return "field runs past the end of its frame";
      case CodecError::varint_overflow: return "varint does not fit in 64 bits";
      case CodecError::unknown_data_type: return "unknown typed-data type";
      case CodecError::out_of_range: return "value out of range for its type";
      case CodecError::unknown_action: return "unknown action type";
      case CodecError::bad_argument_count: return "wrong number of action arguments";
      case CodecError::frame_too_big: return "frame exceeds max-frame-size";
      case CodecError::missing_key: return "mandatory item missing";
      case CodecError::wrong_value_type: return "item has a value of the wrong type";
      case CodecError::too_many_arguments: return "more than 255 arguments in a message";
    }
    return "unknown SPOP codec error";
  }
};

constexpr std::uint8_t data_type_mask = 0x0F;
constexpr std::uint8_t bool_true_flag = 0x10;

constexpr std::uint8_t action_set_var = 1;
constexpr std::uint8_t action_unset_var = 2;
constexpr std::uint8_t set_var_argument_count = 3;
constexpr std::uint8_t unset_var_argument_count = 2;
constexpr std::uint8_t highest_scope = static_cast<std::uint8_t>(Scope::response);
// NB-ARGS of a NOTIFY message is one byte (SPOE.txt 3.2, LIST-OF-MESSAGES).
constexpr std::size_t max_message_arguments = 255;

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
// Needed by clang before 17 (no CTAD for aggregates), which the fuzz preset builds with.
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

std::string_view as_chars(std::span<const std::uint8_t> bytes) noexcept {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

void append_u8(Bytes& out, std::uint8_t value) { out.push_back(value); }

void append_u32_be(Bytes& out, std::uint32_t value) {
  out.push_back(static_cast<std::uint8_t>(value >> 24));
  out.push_back(static_cast<std::uint8_t>(value >> 16));
  out.push_back(static_cast<std::uint8_t>(value >> 8));
  out.push_back(static_cast<std::uint8_t>(value));
}

void append_type_byte(Bytes& out, DataType type, std::uint8_t flags = 0) {
  out.push_back(static_cast<std::uint8_t>(static_cast<std::uint8_t>(type) | flags));
}

void append_typed_string(Bytes& out, std::string_view text) {
  append_type_byte(out, DataType::string);
  append_string(out, text);
}

void append_typed_uint32(Bytes& out, std::uint32_t value) {
  append_type_byte(out, DataType::uint32);
  append_varint(out, value);
}

void append_signed_varint(Bytes& out, std::int64_t value) {
  append_varint(out, static_cast<std::uint64_t>(value));  // two's complement, as HAProxy does
}

void append_disconnect_frame(Bytes& out, FrameType type, Status status, std::string_view message) {
  const auto start = begin_frame(out, FrameHeader{type, flag_fin, 0, 0});
  append_string(out, "status-code");
  append_typed_uint32(out, static_cast<std::uint32_t>(status));
  append_string(out, "message");
  append_typed_string(out, message);
  end_frame(out, start);
}

Result<Scope> read_scope(ByteReader& reader) noexcept {
  auto scope = reader.read_u8();
  if (!scope) return scope.error();
  if (*scope > highest_scope) return CodecError::out_of_range;
  return static_cast<Scope>(*scope);
}

}  // namespace

const std::error_category& codec_category() noexcept {
  static const CodecCategory category;
  return category;
}

std::error_code make_error_code(CodecError error) noexcept {
  return {static_cast<int>(error), codec_category()};
}

// ---------------------------------------------------------------------------------------------
// Primitives

std::size_t varint_size(std::uint64_t value) noexcept {
  if (value < 240) return 1;
  std::size_t size = 2;
  for (value = (value - 240) >> 4; value >= 128; value = (value - 128) >> 7) ++size;
  return size;
}

void append_varint(Bytes& out, std::uint64_t value) {
  if (value < 240) {
    out.push_back(static_cast<std::uint8_t>(value));
    return;
  }
  out.push_back(static_cast<std::uint8_t>(value | 0xF0));
  for (value = (value - 240) >> 4; value >= 128; value = (value - 128) >> 7) {
    out.push_back(static_cast<std::uint8_t>(value | 0x80));
  }
  out.push_back(static_cast<std::uint8_t>(value));
}

void append_string(Bytes& out, std::string_view bytes) {
  append_varint(out, bytes.size());
  out.insert(out.end(), bytes.begin(), bytes.end());
}

void append_value(Bytes& out, const Value& value) {
  std::visit(Overloaded{
                 [&](Null) { append_type_byte(out, DataType::null); },
                 [&](bool flag) { append_type_byte(out, DataType::boolean, flag ? bool_true_flag : 0); },
                 [&](std::int32_t number) {
                   append_type_byte(out, DataType::int32);
                   append_signed_varint(out, number);
                 },
                 [&](std::uint32_t number) { append_typed_uint32(out, number); },
                 [&](std::int64_t number) {
                   append_type_byte(out, DataType::int64);
                   append_signed_varint(out, number);
                 },
                 [&](std::uint64_t number) {
                   append_type_byte(out, DataType::uint64);
                   append_varint(out, number);
                 },
                 [&](const Ipv4& address) {
                   append_type_byte(out, DataType::ipv4);
                   out.insert(out.end(), address.bytes.begin(), address.bytes.end());
                 },
                 [&](const Ipv6& address) {
                   append_type_byte(out, DataType::ipv6);
                   out.insert(out.end(), address.bytes.begin(), address.bytes.end());
                 },
                 [&](const std::string& text) { append_typed_string(out, text); },
                 [&](const Binary& data) {
                   append_type_byte(out, DataType::binary);
                   append_string(out, data.bytes);
                 },
             },
             value);
}

Result<std::uint8_t> ByteReader::read_u8() noexcept {
  if (rest_.empty()) return CodecError::truncated;
  const auto byte = rest_[0];
  rest_ = rest_.subspan(1);
  return byte;
}

Result<std::uint32_t> ByteReader::read_u32_be() noexcept {
  if (rest_.size() < 4) return CodecError::truncated;
  const auto value = static_cast<std::uint32_t>(rest_[0]) << 24 | static_cast<std::uint32_t>(rest_[1]) << 16 |
                     static_cast<std::uint32_t>(rest_[2]) << 8 | static_cast<std::uint32_t>(rest_[3]);
  rest_ = rest_.subspan(4);
  return value;
}

// The encoding is value = b0 + (b1 << 4) + (b2 << 11) + ... + (bn << (4 + 7(n-1))), where b0 >= 240
// announces more bytes and every following byte >= 128 announces one more. That sum is a
// bijection between byte sequences and integers, so rejecting sums above 2^64-1 (at most 10
// bytes) is the only check needed for canonical input.
Result<std::uint64_t> ByteReader::read_varint() noexcept {
  if (rest_.empty()) return CodecError::truncated;
  std::uint64_t value = rest_[0];
  std::size_t used = 1;
  if (value >= 240) {
    unsigned shift = 4;
    for (;;) {
      if (used == rest_.size()) return CodecError::truncated;
      const std::uint64_t byte = rest_[used++];
      if (shift >= 64 || (byte >> (64 - shift)) != 0) return CodecError::varint_overflow;
      const std::uint64_t term = byte << shift;
      if (term > std::numeric_limits<std::uint64_t>::max() - value) return CodecError::varint_overflow;
      value += term;
      if (byte < 128) break;
      shift += 7;
    }
  }
  rest_ = rest_.subspan(used);
  return value;
}

Result<std::span<const std::uint8_t>> ByteReader::read_bytes(std::uint64_t count) noexcept {
  if (count > rest_.size()) return CodecError::truncated;
  const auto bytes = rest_.first(static_cast<std::size_t>(count));
  rest_ = rest_.subspan(static_cast<std::size_t>(count));
  return bytes;
}

Result<std::string_view> ByteReader::read_string() noexcept {
  ByteReader attempt = *this;
  auto length = attempt.read_varint();
  if (!length) return length.error();
  auto bytes = attempt.read_bytes(*length);
  if (!bytes) return bytes.error();
  *this = attempt;
  return as_chars(*bytes);
}

Result<Value> ByteReader::read_value() {
  ByteReader attempt = *this;
  auto type_byte = attempt.read_u8();
  if (!type_byte) return type_byte.error();

  Value value;
  switch (static_cast<DataType>(*type_byte & data_type_mask)) {
    case DataType::null:
      value = Null{};
      break;
    case DataType::boolean:
      value = (*type_byte & bool_true_flag) != 0;
      break;
    case DataType::int32: {
      auto raw = attempt.read_varint();
      if (!raw) return raw.error();
      const auto number = static_cast<std::int64_t>(*raw);
      if (number < std::numeric_limits<std::int32_t>::min() || number > std::numeric_limits<std::int32_t>::max()) {
        return CodecError::out_of_range;
      }
      value = static_cast<std::int32_t>(number);
      break;
    }
    case DataType::uint32: {
      auto raw = attempt.read_varint();
      if (!raw) return raw.error();
      if (*raw > std::numeric_limits<std::uint32_t>::max()) return CodecError::out_of_range;
      value = static_cast<std::uint32_t>(*raw);
      break;
    }
    case DataType::int64: {
      auto raw = attempt.read_varint();
      if (!raw) return raw.error();
      value = static_cast<std::int64_t>(*raw);
      break;
    }
    case DataType::uint64: {
      auto raw = attempt.read_varint();
      if (!raw) return raw.error();
      value = *raw;
      break;
    }
    case DataType::ipv4: {
      auto bytes = attempt.read_bytes(4);
      if (!bytes) return bytes.error();
      Ipv4 address;
      std::copy(bytes->begin(), bytes->end(), address.bytes.begin());
      value = address;
      break;
    }
    case DataType::ipv6: {
      auto bytes = attempt.read_bytes(16);
      if (!bytes) return bytes.error();
      Ipv6 address;
      std::copy(bytes->begin(), bytes->end(), address.bytes.begin());
      value = address;
      break;
    }
    case DataType::string: {
      auto text = attempt.read_string();
      if (!text) return text.error();
      value = std::string(*text);
      break;
    }
    case DataType::binary: {
      auto data = attempt.read_string();
      if (!data) return data.error();
      value = Binary{std::string(*data)};
      break;
    }
    default:
      return CodecError::unknown_data_type;
  }
  *this = attempt;
  return value;
}

// ---------------------------------------------------------------------------------------------
// Frames

Result<SplitFrame> split_frame(std::span<const std::uint8_t> stream, std::uint32_t max_frame_size) noexcept {
  ByteReader reader(stream);
  auto length = reader.read_u32_be();
  if (!length) return SplitFrame{};
  if (*length > max_frame_size) return CodecError::frame_too_big;
  auto body = reader.read_bytes(*length);
  if (!body) return SplitFrame{};
  return SplitFrame{true, *body};
}

Result<FrameView> decode_frame(std::span<const std::uint8_t> body) noexcept {
  ByteReader reader(body);
  auto type = reader.read_u8();
  if (!type) return type.error();
  auto flags = reader.read_u32_be();
  if (!flags) return flags.error();
  auto stream_id = reader.read_varint();
  if (!stream_id) return stream_id.error();
  auto frame_id = reader.read_varint();
  if (!frame_id) return frame_id.error();
  return FrameView{FrameHeader{static_cast<FrameType>(*type), *flags, *stream_id, *frame_id}, reader.rest()};
}

Result<FrameView> decode_whole_frame(std::span<const std::uint8_t> frame) noexcept {
  ByteReader reader(frame);
  auto length = reader.read_u32_be();
  if (!length) return length.error();
  if (*length != reader.remaining()) return CodecError::truncated;
  return decode_frame(reader.rest());
}

void append_frame(Bytes& out, const FrameHeader& header, std::span<const std::uint8_t> payload) {
  const auto start = begin_frame(out, header);
  out.insert(out.end(), payload.begin(), payload.end());
  end_frame(out, start);
}

std::size_t begin_frame(Bytes& out, const FrameHeader& header) {
  const auto start = out.size();
  append_u32_be(out, 0);
  append_u8(out, static_cast<std::uint8_t>(header.type));
  append_u32_be(out, header.flags);
  append_varint(out, header.stream_id);
  append_varint(out, header.frame_id);
  return start;
}

void end_frame(Bytes& out, std::size_t frame_start) noexcept {
  const auto length = static_cast<std::uint32_t>(out.size() - frame_start - frame_length_size);
  out[frame_start] = static_cast<std::uint8_t>(length >> 24);
  out[frame_start + 1] = static_cast<std::uint8_t>(length >> 16);
  out[frame_start + 2] = static_cast<std::uint8_t>(length >> 8);
  out[frame_start + 3] = static_cast<std::uint8_t>(length);
}

// ---------------------------------------------------------------------------------------------
// Payloads

Result<KvList> decode_kv_list(std::span<const std::uint8_t> payload) {
  ByteReader reader(payload);
  KvList items;
  while (!reader.empty()) {
    auto name = reader.read_string();
    if (!name) return name.error();
    auto value = reader.read_value();
    if (!value) return value.error();
    items.push_back(Argument{std::string(*name), std::move(*value)});
  }
  return items;
}

const Value* find_value(const KvList& items, std::string_view key) noexcept {
  for (const auto& item : items) {
    if (item.name == key) return &item.value;
  }
  return nullptr;
}

void append_kv_list(Bytes& out, std::span<const Argument> items) {
  for (const auto& item : items) {
    append_string(out, item.name);
    append_value(out, item.value);
  }
}

Result<std::vector<Message>> decode_messages(std::span<const std::uint8_t> payload) {
  ByteReader reader(payload);
  std::vector<Message> messages;
  while (!reader.empty()) {
    auto name = reader.read_string();
    if (!name) return name.error();
    auto count = reader.read_u8();
    if (!count) return count.error();
    Message& message = messages.emplace_back();
    message.name = *name;
    message.arguments.reserve(*count);
    for (unsigned i = 0; i < *count; ++i) {
      auto argument_name = reader.read_string();
      if (!argument_name) return argument_name.error();
      auto value = reader.read_value();
      if (!value) return value.error();
      message.arguments.push_back(Argument{std::string(*argument_name), std::move(*value)});
    }
  }
  return messages;
}

Result<void> append_messages(Bytes& out, std::span<const Message> messages) {
  const bool fits = std::all_of(messages.begin(), messages.end(), [](const Message& message) {
    return message.arguments.size() <= max_message_arguments;
  });
  if (!fits) return CodecError::too_many_arguments;
  for (const auto& message : messages) {
    append_string(out, message.name);
    append_u8(out, static_cast<std::uint8_t>(message.arguments.size()));
    append_kv_list(out, message.arguments);
  }
  return {};
}

Result<std::vector<Action>> decode_actions(std::span<const std::uint8_t> payload) {
  ByteReader reader(payload);
  std::vector<Action> actions;
  while (!reader.empty()) {
    auto kind = reader.read_u8();
    if (!kind) return kind.error();
    auto count = reader.read_u8();
    if (!count) return count.error();
    if (*kind != action_set_var && *kind != action_unset_var) return CodecError::unknown_action;
    const bool is_set = *kind == action_set_var;
    if (*count != (is_set ? set_var_argument_count : unset_var_argument_count)) {
      return CodecError::bad_argument_count;
    }
    auto scope = read_scope(reader);
    if (!scope) return scope.error();
    auto name = reader.read_string();
    if (!name) return name.error();
    if (!is_set) {
      actions.emplace_back(UnsetVar{*scope, std::string(*name)});
      continue;
    }
    auto value = reader.read_value();
    if (!value) return value.error();
    actions.emplace_back(SetVar{*scope, std::string(*name), std::move(*value)});
  }
  return actions;
}

void append_actions(Bytes& out, std::span<const Action> actions) {
  for (const auto& action : actions) {
    std::visit(Overloaded{
                   [&](const SetVar& set) {
                     append_u8(out, action_set_var);
                     append_u8(out, set_var_argument_count);
                     append_u8(out, static_cast<std::uint8_t>(set.scope));
                     append_string(out, set.name);
                     append_value(out, set.value);
                   },
                   [&](const UnsetVar& unset) {
                     append_u8(out, action_unset_var);
                     append_u8(out, unset_var_argument_count);
                     append_u8(out, static_cast<std::uint8_t>(unset.scope));
                     append_string(out, unset.name);
                   },
               },
               action);
  }
}

Result<DisconnectInfo> decode_disconnect(std::span<const std::uint8_t> payload) {
  auto items = decode_kv_list(payload);
  if (!items) return items.error();
  const Value* status = find_value(*items, "status-code");
  const Value* message = find_value(*items, "message");
  if (status == nullptr || message == nullptr) return CodecError::missing_key;
  const auto* code = std::get_if<std::uint32_t>(status);
  const auto* text = std::get_if<std::string>(message);
  if (code == nullptr || text == nullptr) return CodecError::wrong_value_type;
  return DisconnectInfo{*code, *text};
}

// ---------------------------------------------------------------------------------------------
// Whole frames

void append_haproxy_hello(Bytes& out, std::span<const Argument> items) {
  const auto start = begin_frame(out, FrameHeader{FrameType::haproxy_hello, flag_fin, 0, 0});
  append_kv_list(out, items);
  end_frame(out, start);
}

void append_haproxy_disconnect(Bytes& out, Status status, std::string_view message) {
  append_disconnect_frame(out, FrameType::haproxy_disconnect, status, message);
}

Result<void> append_notify(Bytes& out, std::uint64_t stream_id, std::uint64_t frame_id,
                           std::span<const Message> messages) {
  const auto start = begin_frame(out, FrameHeader{FrameType::notify, flag_fin, stream_id, frame_id});
  if (auto encoded = append_messages(out, messages); !encoded) {
    out.resize(start);
    return encoded;
  }
  end_frame(out, start);
  return {};
}

void append_agent_hello(Bytes& out, std::string_view version, std::uint32_t max_frame_size,
                        std::string_view capabilities) {
  const auto start = begin_frame(out, FrameHeader{FrameType::agent_hello, flag_fin, 0, 0});
  append_string(out, "version");
  append_typed_string(out, version);
  append_string(out, "max-frame-size");
  append_typed_uint32(out, max_frame_size);
  append_string(out, "capabilities");
  append_typed_string(out, capabilities);
  end_frame(out, start);
}

void append_agent_disconnect(Bytes& out, Status status, std::string_view message) {
  append_disconnect_frame(out, FrameType::agent_disconnect, status, message);
}

void append_ack(Bytes& out, std::uint64_t stream_id, std::uint64_t frame_id, std::span<const Action> actions) {
  const auto start = begin_frame(out, FrameHeader{FrameType::ack, flag_fin, stream_id, frame_id});
  append_actions(out, actions);
  end_frame(out, start);
}

// ---------------------------------------------------------------------------------------------
// Names

std::string_view to_string(FrameType type) noexcept {
  switch (type) {
    case FrameType::fragment: return "UNSET";
    case FrameType::haproxy_hello: return "HAPROXY-HELLO";
    case FrameType::haproxy_disconnect: return "HAPROXY-DISCONNECT";
    case FrameType::notify: return "NOTIFY";
    case FrameType::agent_hello: return "AGENT-HELLO";
    case FrameType::agent_disconnect: return "AGENT-DISCONNECT";
    case FrameType::ack: return "ACK";
  }
  return "UNKNOWN";
}

std::string_view describe(Status status) noexcept {
  switch (status) {
    case Status::normal: return "normal";
    case Status::io_error: return "I/O error";
    case Status::timeout: return "a timeout occurred";
    case Status::frame_too_big: return "frame is too big";
    case Status::invalid_frame: return "invalid frame received";
    case Status::no_version: return "version value not found";
    case Status::no_max_frame_size: return "max-frame-size value not found";
    case Status::no_capabilities: return "capabilities value not found";
    case Status::bad_version: return "unsupported version";
    case Status::bad_max_frame_size: return "max-frame-size too big or too small";
    case Status::fragmentation_not_supported: return "payload fragmentation is not supported";
    case Status::interlaced_frames: return "invalid interlaced frames";
    case Status::frame_id_not_found: return "frame-id not found";
    case Status::resource_allocation: return "resource allocation error";
    case Status::unknown: return "an unknown error occurred";
  }
  return "unknown status";
}

}  // namespace director::spop
