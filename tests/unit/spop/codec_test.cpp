// Codec tests: varints, typed data, frames and payloads, against hand-checked bytes (the encoding
// in SPOE.txt, section 3.1, and HAProxy's encoder) rather than against our own encoder only.
#include "spop_test_support.hpp"

#include <catch2/catch.hpp>

#include <limits>
#include <random>

using namespace director::spop;
using spop_test::from_hex;
using spop_test::to_hex;

namespace {

constexpr std::uint64_t max_u64 = std::numeric_limits<std::uint64_t>::max();

Result<std::uint64_t> decode_varint_hex(std::string_view hex, std::size_t* left = nullptr) {
  const auto bytes = from_hex(hex);
  ByteReader reader(bytes);
  auto value = reader.read_varint();
  if (left != nullptr) *left = reader.remaining();
  return value;
}

std::string encode_varint_hex(std::uint64_t value) {
  Bytes out;
  append_varint(out, value);
  return to_hex(out);
}

Result<Value> decode_value_hex(std::string_view hex, std::size_t* left = nullptr) {
  const auto bytes = from_hex(hex);
  ByteReader reader(bytes);
  auto value = reader.read_value();
  if (left != nullptr) *left = reader.remaining();
  return value;
}

std::string encode_value_hex(const Value& value) {
  Bytes out;
  append_value(out, value);
  return to_hex(out);
}

}  // namespace

TEST_CASE("varint: hand-checked values, both ways", "[codec][varint]") {
  const auto [value, hex] = GENERATE(table<std::uint64_t, std::string>({
      {0, "00"},
      {1, "01"},
      {239, "ef"},
      {240, "f000"},
      {1000, "f82f"},
      {2287, "ff7f"},
      {2288, "f08000"},
      {8080, "f0ea02"},
      {16380, "fcf006"},
      {65535, "fff01e"},
      {264431, "ffff7f"},
      {264432, "f0808000"},
      {33818863, "ffffff7f"},
      {33818864, "f080808000"},
      {4294967295ULL, "fff0fefe7e"},
      {9223372036854775808ULL, "f0f1fefefefefefefe06"},
      {18446744073709551614ULL, "fef0fefefefefefefe0e"},
      {max_u64, "fff0fefefefefefefe0e"},
  }));
  CAPTURE(value, hex);
  CHECK(encode_varint_hex(value) == hex);
  CHECK(varint_size(value) == hex.size() / 2);
  std::size_t left = 99;
  const auto decoded = decode_varint_hex(hex + "ab", &left);  // a trailing byte stays unread
  REQUIRE(decoded.has_value());
  CHECK(*decoded == value);
  CHECK(left == 1);
}

TEST_CASE("varint: every size boundary and pseudo-random values round-trip", "[codec][varint]") {
  std::vector<std::uint64_t> values;
  for (unsigned bit = 0; bit < 64; ++bit) {
    const std::uint64_t power = std::uint64_t{1} << bit;
    values.insert(values.end(), {power - 1, power, power + 1});
  }
  std::mt19937_64 random(20240229);
  for (int i = 0; i < 2000; ++i) values.push_back(random() >> (random() % 64));
  values.push_back(max_u64);
  for (const auto value : values) {
    Bytes out;
    append_varint(out, value);
    REQUIRE(out.size() == varint_size(value));
    ByteReader reader(out);
    const auto decoded = reader.read_varint();
    REQUIRE(decoded.has_value());
    REQUIRE(*decoded == value);
    REQUIRE(reader.empty());
  }
}

TEST_CASE("varint: truncated and overflowing inputs are error values", "[codec][varint]") {
  SECTION("truncated") {
    const auto hex = GENERATE(as<std::string>{}, "", "f0", "f080", "ff80", "fff0fefe", "fff0fefefefefefefe");
    CAPTURE(hex);
    const auto bytes = from_hex(hex);
    ByteReader reader(bytes);
    const auto decoded = reader.read_varint();
    REQUIRE_FALSE(decoded.has_value());
    CHECK(decoded.error() == CodecError::truncated);
    CHECK(reader.remaining() == bytes.size());  // a failed read consumes nothing
  }
  SECTION("above 2^64-1") {
    const auto hex = GENERATE(as<std::string>{},
                              "fff0fefefefefefefe0f",    // 2^64-1 + 2^60
                              "ffffffffffffffffff0e",    // the sum overflows by a little
                              "fff0fefefefefefefe10",    // the 10th byte loses bits when shifted
                              "f080808080808080808000",  // 11 bytes
                              "ffffffffffffffffffffffffffff7f");
    CAPTURE(hex);
    const auto bytes = from_hex(hex);
    ByteReader reader(bytes);
    const auto decoded = reader.read_varint();
    REQUIRE_FALSE(decoded.has_value());
    CHECK(decoded.error() == CodecError::varint_overflow);
    CHECK(reader.remaining() == bytes.size());
  }
}

TEST_CASE("typed data: every type encodes to the documented bytes and back", "[codec][data]") {
  Ipv6 loopback6;
  loopback6.bytes[15] = 1;
  const auto [value, hex] = GENERATE_COPY(table<Value, std::string>({
      {Value{Null{}}, "00"},
      {Value{true}, "11"},
      {Value{false}, "01"},
      {Value{std::int32_t{5}}, "0205"},
      {Value{std::int32_t{-1}}, "02fff0fefefefefefefe0e"},
      {Value{std::numeric_limits<std::int32_t>::min()}, "02f0f1fefebefefefefe0e"},
      {Value{std::numeric_limits<std::int32_t>::max()}, "02fff0fefe3e"},
      {Value{std::uint32_t{16380}}, "03fcf006"},
      {Value{std::uint32_t{4294967295U}}, "03fff0fefe7e"},
      {Value{std::int64_t{-2}}, "04fef0fefefefefefefe0e"},
      {Value{std::numeric_limits<std::int64_t>::min()}, "04f0f1fefefefefefefe06"},
      {Value{std::uint64_t{8080}}, "05f0ea02"},
      {Value{max_u64}, "05fff0fefefefefefefe0e"},
      {Value{Ipv4{{127, 0, 0, 1}}}, "067f000001"},
      {Value{loopback6}, "0700000000000000000000000000000001"},
      {Value{std::string("jack")}, "08046a61636b"},
      {Value{std::string()}, "0800"},
      {Value{std::string("J\xc3\xa4""ck")}, "08054ac3a4636b"},
      {Value{std::string("a\0b", 3)}, "0803610062"},
      {Value{Binary{"\x01\x02"}}, "09020102"},
      {Value{Binary{}}, "0900"},
  }));
  CAPTURE(hex);
  CHECK(encode_value_hex(value) == hex);
  std::size_t left = 99;
  const auto decoded = decode_value_hex(hex, &left);
  REQUIRE(decoded.has_value());
  CHECK(*decoded == value);
  CHECK(decoded->index() == value.index());
  CHECK(left == 0);
}

TEST_CASE("typed data: flags are read from the high nibble", "[codec][data]") {
  SECTION("BOOL is true when flag bit 0 is set") {
    CHECK(spop_test::value_of(decode_value_hex("11")) == Value{true});
    CHECK(spop_test::value_of(decode_value_hex("31")) == Value{true});
    CHECK(spop_test::value_of(decode_value_hex("01")) == Value{false});
    CHECK(spop_test::value_of(decode_value_hex("21")) == Value{false});
  }
  SECTION("other types ignore their flags, as HAProxy does") {
    CHECK(spop_test::value_of(decode_value_hex("18046a61636b")) == Value{std::string("jack")});
    CHECK(spop_test::value_of(decode_value_hex("f0")) == Value{Null{}});
  }
  SECTION("a swapped nibble order is not read as the same type") {
    // 0x80 would be STRING if the type were in the high nibble: it is NULL with flag 8.
    CHECK(spop_test::value_of(decode_value_hex("80")) == Value{Null{}});
  }
}

TEST_CASE("typed data: malformed values are error values", "[codec][data]") {
  const auto [hex, error] = GENERATE(table<std::string, CodecError>({
      {"", CodecError::truncated},
      {"0a", CodecError::unknown_data_type},
      {"0f", CodecError::unknown_data_type},
      {"1e00", CodecError::unknown_data_type},
      {"02", CodecError::truncated},
      {"02f0", CodecError::truncated},
      {"02f0f0fefefefefefefe7f", CodecError::varint_overflow},
      {"02f0f1fefe3e", CodecError::out_of_range},            // INT32 2^31
      {"02fff0fefe7e", CodecError::out_of_range},            // INT32 0xffffffff is not -1
      {"03f0f1fefe7e", CodecError::out_of_range},            // UINT32 2^32
      {"067f0000", CodecError::truncated},
      {"07000000000000000000000000000000", CodecError::truncated},
      {"0805616263", CodecError::truncated},
      {"08", CodecError::truncated},
      {"08fff0fefefefefefefe0e", CodecError::truncated},  // a 2^64-1 byte long string
      {"0901", CodecError::truncated},
  }));
  CAPTURE(hex);
  const auto bytes = from_hex(hex);
  ByteReader reader(bytes);
  const auto decoded = reader.read_value();
  REQUIRE_FALSE(decoded.has_value());
  CHECK(decoded.error() == error);
  CHECK(reader.remaining() == bytes.size());
}

TEST_CASE("frames: split_frame reports need-more, too-big and whole frames", "[codec][frame]") {
  const Bytes frame = from_hex("00000015670000000100010103010869705f73636f72650348");

  SECTION("every strict prefix needs more") {
    for (std::size_t size = 0; size < frame.size(); ++size) {
      const auto split = split_frame(std::span(frame).first(size), 16380);
      REQUIRE(split.has_value());
      CHECK_FALSE(split->complete);
      CHECK(split->wire_size() == 0);
    }
  }
  SECTION("the whole frame and what follows it") {
    Bytes stream = frame;
    stream.push_back(0x00);
    const auto split = split_frame(stream, 16380);
    REQUIRE(split.has_value());
    REQUIRE(split->complete);
    CHECK(split->wire_size() == frame.size());
    CHECK(to_hex(split->body) == to_hex(std::span(frame).subspan(4)));
  }
  SECTION("too big is known from the length alone") {
    const Bytes length_only = from_hex("00000101");
    CHECK(split_frame(length_only, 256).error() == CodecError::frame_too_big);
    CHECK(split_frame(from_hex("ffffffff"), 16380).error() == CodecError::frame_too_big);
    CHECK(split_frame(frame, 0x14).error() == CodecError::frame_too_big);
    const auto at_limit = split_frame(from_hex("00000100"), 256);
    REQUIRE(at_limit.has_value());
    CHECK_FALSE(at_limit->complete);
    const auto whole = split_frame(frame, 0x15);
    REQUIRE(whole.has_value());
    CHECK(whole->complete);
  }
  SECTION("a zero length is a complete, empty frame that does not decode") {
    const auto split = split_frame(from_hex("00000000"), 16380);
    REQUIRE(split.has_value());
    REQUIRE(split->complete);
    CHECK(split->body.empty());
    CHECK(decode_frame(split->body).error() == CodecError::truncated);
  }
}

TEST_CASE("frames: header decoding", "[codec][frame]") {
  SECTION("fields and payload") {
    const Bytes body = from_hex("0300000001f0ea02fff0fefefefefefefe0e" "aabb");
    const auto frame = decode_frame(body);
    REQUIRE(frame.has_value());
    CHECK(frame->header == FrameHeader{FrameType::notify, flag_fin, 8080, max_u64});
    CHECK(to_hex(frame->payload) == "aabb");
  }
  SECTION("unknown types are kept as read") {
    const auto frame = decode_frame(from_hex("2a000000030000"));
    REQUIRE(frame.has_value());
    CHECK(static_cast<int>(frame->header.type) == 42);
    CHECK(frame->header.flags == (flag_fin | flag_abort));
    CHECK(to_string(frame->header.type) == "UNKNOWN");
  }
  SECTION("every truncation of the header is an error") {
    const Bytes body = from_hex("0300000001f0ea02f0ea02");
    for (std::size_t size = 0; size < body.size(); ++size) {
      CAPTURE(size);
      CHECK(decode_frame(std::span(body).first(size)).error() == CodecError::truncated);
    }
    CHECK(decode_frame(body).has_value());
  }
  SECTION("an overflowing id is an error") {
    CHECK(decode_frame(from_hex("0300000001fff0fefefefefefefe0f00")).error() == CodecError::varint_overflow);
  }
  SECTION("decode_whole_frame requires the length to match") {
    CHECK(decode_whole_frame(from_hex("00000007030000000100")).error() == CodecError::truncated);
    CHECK(decode_whole_frame(from_hex("000000070300000001000000")).error() == CodecError::truncated);
    CHECK(decode_whole_frame(from_hex("0000000703000000010000")).has_value());
  }
}

TEST_CASE("frames: begin/end_frame and append_frame write the length last", "[codec][frame]") {
  Bytes out = from_hex("ee");  // frames append after what is there
  append_frame(out, FrameHeader{FrameType::fragment, 0, 0, 240}, from_hex("0102"));
  CHECK(to_hex(out) == "ee" "0000000a" "00" "00000000" "00" "f000" "0102");
}

TEST_CASE("KV lists: decode, exact key lookup, encode", "[codec][kv]") {
  const KvList items = {Argument{"max-frame-size-extra", std::uint32_t{1}},
                        Argument{"max-frame", std::uint32_t{2}},
                        Argument{"MAX-FRAME-SIZE", std::uint32_t{3}},
                        Argument{"", std::string("empty name")},
                        Argument{"max-frame-size", std::uint32_t{4}},
                        Argument{"max-frame-size", std::uint32_t{5}}};
  Bytes payload;
  append_kv_list(payload, items);
  const auto decoded = decode_kv_list(payload);
  REQUIRE(decoded.has_value());
  CHECK(*decoded == items);
  REQUIRE(find_value(*decoded, "max-frame-size") != nullptr);
  CHECK(*find_value(*decoded, "max-frame-size") == Value{std::uint32_t{4}});  // the first one
  CHECK(find_value(*decoded, "max-frame-siz") == nullptr);
  CHECK(find_value(*decoded, "max-frame-size-extra-") == nullptr);
  CHECK(*find_value(*decoded, "") == Value{std::string("empty name")});

  SECTION("empty payload is an empty list") { CHECK(spop_test::value_of(decode_kv_list({})).empty()); }
  SECTION("every truncation fails (the list ends on an item boundary or not at all)") {
    std::size_t boundaries = 0;
    for (std::size_t size = 0; size < payload.size(); ++size) {
      const auto partial = decode_kv_list(std::span(payload).first(size));
      if (partial.has_value()) ++boundaries;
    }
    CHECK(boundaries == items.size());  // the empty prefix and 5 item ends
  }
  SECTION("a name running past the end") { CHECK(decode_kv_list(from_hex("0561")).error() == CodecError::truncated); }
  SECTION("a name without a value") { CHECK(decode_kv_list(from_hex("0161")).error() == CodecError::truncated); }
}

TEST_CASE("messages: decode and encode NOTIFY payloads", "[codec][messages]") {
  SECTION("empty message names, empty argument names, zero arguments") {
    const std::vector<Message> messages = {Message{"", {}},
                                           Message{"m", {Argument{"", std::int64_t{-5}}, Argument{"b", true}}}};
    Bytes payload;
    append_messages(payload, messages);
    CHECK(to_hex(payload) == "0000" "016d02" "00" "04fbf0fefefefefefefe0e" "016211");
    const auto decoded = decode_messages(payload);
    REQUIRE(decoded.has_value());
    CHECK(*decoded == messages);
  }
  SECTION("an argument count beyond the payload is truncated") {
    CHECK(decode_messages(from_hex("016d02" "016100")).error() == CodecError::truncated);
    CHECK(decode_messages(from_hex("016d")).error() == CodecError::truncated);
  }
  SECTION("255 arguments at most: more is an error, never a silent truncation") {
    Message big{"big", {}};
    for (int i = 0; i < 255; ++i) big.arguments.push_back(Argument{"", Null{}});
    Bytes payload;
    REQUIRE(append_messages(payload, std::span(&big, 1)).has_value());
    const auto decoded = decode_messages(payload);
    REQUIRE(decoded.has_value());
    CHECK(decoded->at(0).arguments.size() == 255);

    big.arguments.push_back(Argument{"", Null{}});  // 256
    const std::vector<Message> messages = {Message{"first", {}}, big};
    Bytes untouched = {0xAB};
    const auto refused = append_messages(untouched, messages);
    REQUIRE_FALSE(refused.has_value());
    CHECK(refused.error() == CodecError::too_many_arguments);
    CHECK(untouched == Bytes{0xAB});  // nothing appended, not even the first message
    const auto notify = append_notify(untouched, 1, 1, messages);
    REQUIRE_FALSE(notify.has_value());
    CHECK(notify.error() == CodecError::too_many_arguments);
    CHECK(untouched == Bytes{0xAB});  // no half-written frame either
  }
}

TEST_CASE("actions: decode and encode ACK payloads", "[codec][actions]") {
  SECTION("the bytes of set-var and unset-var") {
    const std::vector<Action> actions = {SetVar{Scope::session, "ip_score", std::uint32_t{72}},
                                         UnsetVar{Scope::transaction, "x"},
                                         SetVar{Scope::response, "", Null{}}};
    Bytes payload;
    append_actions(payload, actions);
    CHECK(to_hex(payload) == "01030108" "69705f73636f7265" "0348" "02020201" "78" "0103040000");
    const auto decoded = decode_actions(payload);
    REQUIRE(decoded.has_value());
    CHECK(*decoded == actions);
  }
  SECTION("malformed actions") {
    const auto [hex, error] = GENERATE(table<std::string, CodecError>({
        {"03020201 78", CodecError::unknown_action},
        {"00020201 78", CodecError::unknown_action},
        {"01020201 78", CodecError::bad_argument_count},
        {"02030201 78 00", CodecError::bad_argument_count},
        {"02020501 78", CodecError::out_of_range},
        {"01", CodecError::truncated},
        {"0103", CodecError::truncated},
        {"010302", CodecError::truncated},
        {"01030201", CodecError::truncated},
        {"0103020178", CodecError::truncated},
        {"01030201780a", CodecError::unknown_data_type},
    }));
    std::string compact;
    for (const char c : hex) if (c != ' ') compact.push_back(c);
    CAPTURE(compact);
    const auto decoded = decode_actions(from_hex(compact));
    REQUIRE_FALSE(decoded.has_value());
    CHECK(decoded.error() == error);
  }
}

TEST_CASE("disconnect payloads", "[codec][disconnect]") {
  Bytes frame;
  append_agent_disconnect(frame, Status::bad_version, "unsupported version");
  const auto view = spop_test::decode_whole(frame);
  CHECK(view.header == FrameHeader{FrameType::agent_disconnect, flag_fin, 0, 0});
  CHECK(spop_test::value_of(decode_disconnect(view.payload)) == DisconnectInfo{8, "unsupported version"});

  KvList missing_message = {Argument{"status-code", std::uint32_t{0}}};
  Bytes payload;
  append_kv_list(payload, missing_message);
  CHECK(decode_disconnect(payload).error() == CodecError::missing_key);

  KvList wrong_type = {Argument{"status-code", std::int32_t{0}}, Argument{"message", std::string("x")}};
  payload.clear();
  append_kv_list(payload, wrong_type);
  CHECK(decode_disconnect(payload).error() == CodecError::wrong_value_type);
}

TEST_CASE("HAProxy-side encoders produce frames HAProxy would send", "[codec][haproxy-side]") {
  SECTION("HAPROXY-HELLO with arbitrary items, byte-identical to the 2.6 health check") {
    const KvList items = {Argument{"supported-versions", std::string("2.0")},
                          Argument{"max-frame-size", std::uint32_t{16380}},
                          Argument{"capabilities", std::string()},
                          Argument{"healthcheck", true}};
    Bytes frame;
    append_haproxy_hello(frame, items);
    CHECK(to_hex(frame) ==
          "0000004e0100000001000012737570706f727465642d76657273696f6e730803322e300e6d61782d6672616d652d73697a6503"
          "fcf0060c6361706162696c697469657308000b6865616c7468636865636b11");
  }
  SECTION("NOTIFY keeps ids 0 and 2^64-1") {
    const auto frame = spop_test::notify_frame(max_u64, 0, spop_test::route_messages("jack"));
    const auto view = spop_test::decode_whole(frame);
    CHECK(view.header == FrameHeader{FrameType::notify, flag_fin, max_u64, 0});
    CHECK(spop_test::value_of(decode_messages(view.payload)) == spop_test::route_messages("jack"));
  }
  SECTION("HAPROXY-DISCONNECT, byte-identical to the 2.6 soft stop") {
    Bytes frame;
    append_haproxy_disconnect(frame, Status::normal, describe(Status::normal));
    CHECK(to_hex(frame) == "00000025020000000100000b7374617475732d636f64650300076d65737361676508066e6f726d616c");
  }
  SECTION("several frames share one buffer") {
    Bytes stream;
    append_notify(stream, 1, 1, {});
    append_notify(stream, 3, 1, {});
    CHECK(to_hex(stream) == "0000000703000000010101" "0000000703000000010301");
  }
}

TEST_CASE("codec errors have a category and messages", "[codec]") {
  const std::error_code error = CodecError::truncated;
  CHECK(error.category().name() == std::string_view("spop.codec"));
  CHECK_FALSE(error.message().empty());
  CHECK(to_string(FrameType::haproxy_hello) == "HAPROXY-HELLO");
  CHECK(describe(Status::normal) == "normal");
}
