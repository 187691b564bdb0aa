// libFuzzer target: the frame reader and every payload decoder on arbitrary bytes.
//
// Input: a byte stream as it arrives from the network (seeds: whole captured frames).
// Checks: split_frame never reports a frame larger than its limit or the stream; decode_frame
// and decode_whole_frame agree; every payload decoder either fails cleanly or round-trips
// (decode(encode(decode(x))) == decode(x), with an encoding exactly as long as the input, the
// wire encoding being canonical up to flag bits).
#include "fuzz_support.hpp"

#include "spop/codec.hpp"

#include <cstring>
#include <limits>
#include <vector>

using namespace director::spop;

namespace {

void check_values(std::span<const std::uint8_t> bytes) {
  ByteReader reader(bytes);
  while (!reader.empty()) {
    const auto before = reader.remaining();
    auto value = reader.read_value();
    if (!value) {
      FUZZ_CHECK(reader.remaining() == before);  // a failed read leaves the position unchanged
      return;
    }
    FUZZ_CHECK(reader.remaining() < before);
    Bytes encoded;
    append_value(encoded, *value);
    FUZZ_CHECK(encoded.size() == before - reader.remaining());
    ByteReader again(encoded);
    auto decoded = again.read_value();
    FUZZ_CHECK(decoded && *decoded == *value && again.empty());
  }
}

void check_varint(std::span<const std::uint8_t> bytes) {
  ByteReader reader(bytes);
  auto value = reader.read_varint();
  if (!value) {
    FUZZ_CHECK(reader.remaining() == bytes.size());
    return;
  }
  const auto used = bytes.size() - reader.remaining();
  FUZZ_CHECK(used == varint_size(*value));
  Bytes encoded;
  append_varint(encoded, *value);
  FUZZ_CHECK(encoded.size() == used && std::memcmp(encoded.data(), bytes.data(), used) == 0);
}

void check_payload_decoders(std::span<const std::uint8_t> payload) {
  if (auto items = decode_kv_list(payload)) {
    Bytes encoded;
    append_kv_list(encoded, *items);
    FUZZ_CHECK(encoded.size() == payload.size());
    auto again = decode_kv_list(encoded);
    FUZZ_CHECK(again && *again == *items);
  }
  if (auto messages = decode_messages(payload)) {
    Bytes encoded;
    append_messages(encoded, *messages);
    FUZZ_CHECK(encoded.size() == payload.size());
    auto again = decode_messages(encoded);
    FUZZ_CHECK(again && *again == *messages);
  }
  if (auto actions = decode_actions(payload)) {
    Bytes encoded;
    append_actions(encoded, *actions);
    FUZZ_CHECK(encoded.size() == payload.size());
    auto again = decode_actions(encoded);
    FUZZ_CHECK(again && *again == *actions);
  }
  if (auto info = decode_disconnect(payload)) {
    FUZZ_CHECK(decode_kv_list(payload).has_value());
  }
}

void check_frame(std::span<const std::uint8_t> body) {
  auto frame = decode_frame(body);
  if (!frame) return;
  FUZZ_CHECK(frame->payload.size() <= body.size());
  FUZZ_CHECK(frame->payload.data() + frame->payload.size() == body.data() + body.size());
  // Re-encoding the header in front of the same payload gives back a frame that decodes to it.
  Bytes whole = fuzz::make_frame(frame->header, frame->payload);
  auto again = decode_whole_frame(whole);
  FUZZ_CHECK(again && again->header == frame->header && again->payload.size() == frame->payload.size());
  FUZZ_CHECK(std::memcmp(again->payload.data(), frame->payload.data(), frame->payload.size()) == 0);
  FUZZ_CHECK(whole.size() == frame_length_size + body.size());
  check_payload_decoders(frame->payload);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto stream = fuzz::as_bytes(data, size);

  for (const std::uint32_t limit : {std::uint32_t{256}, std::uint32_t{16380}, std::numeric_limits<std::uint32_t>::max()}) {
    auto split = split_frame(stream, limit);
    if (!split) {
      FUZZ_CHECK(split.error() == make_error_code(CodecError::frame_too_big));
      continue;
    }
    if (!split->complete) {
      FUZZ_CHECK(split->wire_size() == 0);
      continue;
    }
    FUZZ_CHECK(split->body.size() <= limit);
    FUZZ_CHECK(split->wire_size() <= stream.size());
    FUZZ_CHECK(split->body.data() == stream.data() + frame_length_size);
  }

  // Frames back to back, as a connection delivers them.
  auto rest = stream;
  while (true) {
    auto split = split_frame(rest, std::numeric_limits<std::uint32_t>::max());
    if (!split || !split->complete) break;
    auto whole = decode_whole_frame(rest.first(split->wire_size()));
    auto header = decode_frame(split->body);
    FUZZ_CHECK(whole.has_value() == header.has_value());
    if (whole) FUZZ_CHECK(whole->header == header->header && whole->payload.size() == header->payload.size());
    check_frame(split->body);
    rest = rest.subspan(split->wire_size());
  }

  // The raw input as a frame body and as a payload, so that the decoders see every byte.
  check_frame(stream);
  check_payload_decoders(stream);
  check_values(stream);
  check_varint(stream);
  return 0;
}
