// Pseudo-random input (deterministic seeds) never crashes the codec or the session, and the
// session's answers stay well-formed. Run under AddressSanitizer/UBSan to make this meaningful.
#include "spop_test_support.hpp"

#include <catch2/catch.hpp>

#include <random>

using namespace director::spop;

namespace {

Bytes random_bytes(std::mt19937& random, std::size_t max_size) {
  Bytes bytes(random() % (max_size + 1));
  for (auto& byte : bytes) byte = static_cast<std::uint8_t>(random());
  return bytes;
}

// Random bytes behind a plausible frame length, so that they reach the frame decoders.
Bytes random_frame(std::mt19937& random) {
  Bytes body = random_bytes(random, 120);
  if (!body.empty() && random() % 2 == 0) {
    const std::uint8_t types[] = {0, 1, 2, 3, 101, 102, 103, 42};
    body[0] = types[random() % std::size(types)];
  }
  if (body.size() >= 5 && random() % 4 != 0) body[4] |= 0x01;  // mostly FIN
  const auto length = static_cast<std::uint32_t>(body.size());
  Bytes frame = {static_cast<std::uint8_t>(length >> 24), static_cast<std::uint8_t>(length >> 16),
           static_cast<std::uint8_t>(length >> 8), static_cast<std::uint8_t>(length)};
  frame.insert(frame.end(), body.begin(), body.end());
  return frame;
}

// A captured frame with a few bytes changed, cut short, or extended.
Bytes mutate(std::mt19937& random, Bytes frame) {
  const auto edits = 1 + random() % 4;
  for (unsigned i = 0; i < edits && !frame.empty(); ++i) {
    switch (random() % 4) {
      case 0: frame[random() % frame.size()] = static_cast<std::uint8_t>(random()); break;
      case 1: frame[random() % frame.size()] ^= static_cast<std::uint8_t>(1U << (random() % 8)); break;
      case 2: frame.resize(random() % frame.size()); break;
      default: frame.push_back(static_cast<std::uint8_t>(random())); break;
    }
  }
  return frame;
}

void check_answers(const Session& session, const FeedResult& result, std::size_t input_size) {
  REQUIRE(result.consumed <= input_size);
  for (const auto& write : result.writes) {
    auto frame = decode_whole_frame(write);
    REQUIRE(frame.has_value());
    REQUIRE(write.size() <= 4 + std::size_t{16380});
    const auto type = frame->header.type;
    REQUIRE((type == FrameType::agent_hello || type == FrameType::agent_disconnect));
    if (type == FrameType::agent_disconnect) REQUIRE(decode_disconnect(frame->payload).has_value());
  }
  if (result.close) {
    REQUIRE_FALSE(result.writes.empty());
    REQUIRE(decode_whole_frame(result.writes.back())->header.type == FrameType::agent_disconnect);
    REQUIRE(session.state() == SessionState::closing);
  }
}

void exercise_decoders(std::span<const std::uint8_t> bytes) {
  ByteReader varint_reader(bytes);
  (void)varint_reader.read_varint();
  ByteReader value_reader(bytes);
  while (value_reader.read_value()) {
  }
  (void)decode_frame(bytes);
  (void)decode_whole_frame(bytes);
  (void)split_frame(bytes, 256);
  (void)decode_kv_list(bytes);
  (void)decode_messages(bytes);
  (void)decode_actions(bytes);
  (void)decode_disconnect(bytes);
}

}  // namespace

TEST_CASE("fuzz: random bytes never crash the decoders or the session", "[fuzz]") {
  std::mt19937 random(0x5b0b);
  for (int round = 0; round < 3000; ++round) {
    const auto bytes = random() % 2 == 0 ? random_bytes(random, 200) : random_frame(random);
    exercise_decoders(bytes);
    if (bytes.size() > 4) exercise_decoders(std::span(bytes).subspan(4));

    Session fresh;
    check_answers(fresh, fresh.feed(bytes), bytes.size());

    Session ready;
    ready.feed(spop_test::hello_frame(spop_test::standard_hello_items(random() % 2 == 0 ? 256 : 16380)));
    const auto result = ready.feed(bytes);
    check_answers(ready, result, bytes.size());
  }
}

TEST_CASE("fuzz: mutated captured frames never crash, and splitting does not change results", "[fuzz]") {
  std::mt19937 random(0xca97);
  std::vector<Bytes> corpus;
  for (const auto* file : spop_test::capture_files) {
    for (const auto& captured : spop_test::load_capture(file)) corpus.push_back(captured.bytes);
  }
  const auto hello = spop_test::hello_frame(spop_test::standard_hello_items());
  for (int round = 0; round < 3000; ++round) {
    const auto mutated = mutate(random, corpus[random() % corpus.size()]);
    exercise_decoders(mutated);
    if (mutated.size() > 4) exercise_decoders(std::span(mutated).subspan(4));

    const auto stream = spop_test::concat({hello, mutated});
    Session whole_session;
    const auto whole = spop_test::feed_whole(whole_session, stream);
    Session split_session;
    const std::size_t cut = random() % (stream.size() + 1);
    REQUIRE(spop_test::feed_in_pieces(split_session, stream, {cut}) == whole);

    Session session;
    check_answers(session, session.feed(stream), stream.size());
  }
}
