// libFuzzer target: the whole SPOP session state machine fed an arbitrary byte stream, in
// arbitrary chunks, the way server/connection.cpp feeds it.
//
// Input: byte 0 picks our max-frame-size and seeds the chunk sizes; bytes 1.. are what HAProxy
// sent on one connection (seeds: each captured connection, HAProxy's side).
// The driver keeps a read buffer of up to Session::max_buffered_bytes() bytes (starting smaller
// and doubling when full, as the connection does), fills it chunk by chunk,
// feeds the filled part, keeps what was not consumed, answers every NOTIFY (encode_ack), and
// stops at close, as the connection does. Checks:
// - consumed never exceeds what was fed; what is left is one incomplete frame that fits the
//   buffer, so a full buffer always makes progress (the connection could never read again);
// - every write is one whole frame that decodes, within the max-frame-size in force, and the
//   session writes at most one AGENT-HELLO, first, and AGENT-DISCONNECT only last;
// - close comes with an AGENT-DISCONNECT and the closing state; error_status() is set exactly
//   when that DISCONNECT carries a status other than normal;
// - NOTIFYs only after the HELLO, every ACK decodes and echoes the ids;
// - the outcome does not depend on the chunking: the same stream fed whole gives the same
//   writes, NOTIFYs and final state.
#include "fuzz_support.hpp"

#include "spop/codec.hpp"
#include "spop/session.hpp"

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

using namespace director::spop;

namespace {

struct Outcome {
  std::vector<Bytes> writes;
  std::vector<Notify> notifies;
  SessionState state = SessionState::awaiting_hello;
  std::optional<Status> error;
  std::size_t consumed = 0;
};

bool same_notifies(const std::vector<Notify>& a, const std::vector<Notify>& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](const Notify& x, const Notify& y) {
           return x.stream_id == y.stream_id && x.frame_id == y.frame_id && x.messages == y.messages;
         });
}

// Small deterministic generator for the chunk sizes (xorshift32).
class Chunks {
 public:
  explicit Chunks(std::uint8_t seed) : state_(0x9E3779B9U ^ (std::uint32_t{seed} * 0x01000193U)), mode_(seed & 0x03) {}

  std::size_t next() {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 17;
    state_ ^= state_ << 5;
    switch (mode_) {
      case 0: return 1;                          // byte by byte
      case 1: return 1 + state_ % 7;             // tiny reads
      case 2: return 1 + state_ % 200;           // typical frames
      default: return 1 + state_ % 70000;        // large reads
    }
  }

 private:
  std::uint32_t state_;
  unsigned mode_;
};

void check_write(const Session& session, const Bytes& write, std::uint32_t frame_limit, Outcome& outcome,
                 bool& saw_hello, bool& saw_disconnect) {
  FUZZ_CHECK(!saw_disconnect);  // nothing after an AGENT-DISCONNECT
  auto frame = decode_whole_frame(write);
  FUZZ_CHECK(frame.has_value());
  FUZZ_CHECK(frame->header.flags == flag_fin);
  FUZZ_CHECK(write.size() - frame_length_size <= frame_limit);
  switch (frame->header.type) {
    case FrameType::agent_hello:
      FUZZ_CHECK(!saw_hello && outcome.writes.empty());
      saw_hello = true;
      FUZZ_CHECK(decode_kv_list(frame->payload).has_value());
      break;
    case FrameType::agent_disconnect: {
      saw_disconnect = true;
      auto info = decode_disconnect(frame->payload);
      FUZZ_CHECK(info.has_value());
      FUZZ_CHECK(write.size() - frame_length_size <= 256);
      const auto status = static_cast<Status>(info->status_code);
      if (status == Status::normal) {
        FUZZ_CHECK(!session.error_status());
      } else {
        FUZZ_CHECK(session.error_status() == status);
      }
      break;
    }
    default:
      FUZZ_CHECK(false);  // the session itself writes only HELLO and DISCONNECT
  }
  outcome.writes.push_back(write);
}

void answer(const Session& session, const Notify& notify) {
  const Action actions[] = {
      SetVar{Scope::transaction, "alive", true},
      SetVar{Scope::transaction, "reason", std::string("ok")},
  };
  for (const auto count : {std::size_t{0}, std::size_t{2}}) {
    const Bytes ack = session.encode_ack(notify.stream_id, notify.frame_id, std::span(actions, count)).frame;
    auto frame = decode_whole_frame(ack);
    FUZZ_CHECK(frame && frame->header.type == FrameType::ack && frame->header.flags == flag_fin);
    FUZZ_CHECK(frame->header.stream_id == notify.stream_id && frame->header.frame_id == notify.frame_id);
    FUZZ_CHECK(ack.size() - frame_length_size <= session.max_frame_size());
    auto decoded = decode_actions(frame->payload);
    FUZZ_CHECK(decoded && !decoded->empty());
  }
}

// The connection's read loop over `stream`, chunked.
Outcome run_chunked(std::span<const std::uint8_t> stream, std::uint32_t our_limit, std::uint8_t seed) {
  Session session(SessionLimits{our_limit});
  Chunks chunks(seed);
  Outcome outcome;
  // Like the connection: a small buffer that doubles, up to one whole frame, when it is full.
  const std::size_t max_buffer = session.max_buffered_bytes();
  FUZZ_CHECK(max_buffer >= frame_length_size + 256);
  std::vector<std::uint8_t> buffer(std::min<std::size_t>(4096, max_buffer));
  std::size_t filled = 0;
  std::size_t position = 0;
  bool saw_hello = false;
  bool saw_disconnect = false;
  while (position < stream.size() && session.state() != SessionState::closing) {
    const std::size_t room = buffer.size() - filled;
    FUZZ_CHECK(room > 0);  // a full buffer with no progress would stall the connection forever
    const std::size_t chunk = std::min({chunks.next(), room, stream.size() - position});
    std::memcpy(buffer.data() + filled, stream.data() + position, chunk);
    filled += chunk;
    position += chunk;

    const bool was_processing = session.state() == SessionState::processing;
    const std::uint32_t limit_before = session.max_frame_size();
    auto result = session.feed(std::span<const std::uint8_t>(buffer.data(), filled));
    FUZZ_CHECK(result.consumed <= filled);
    outcome.consumed += result.consumed;
    // Frames written in this call are bounded by the size in force when they were decided:
    // ours before HELLO, the negotiated one after (never above ours).
    FUZZ_CHECK(session.max_frame_size() <= limit_before);
    for (const auto& write : result.writes) check_write(session, write, limit_before, outcome, saw_hello, saw_disconnect);
    if (!result.notifies.empty()) FUZZ_CHECK(was_processing || saw_hello);
    for (const auto& notify : result.notifies) answer(session, notify);
    outcome.notifies.insert(outcome.notifies.end(), result.notifies.begin(), result.notifies.end());

    if (result.close) {
      FUZZ_CHECK(session.state() == SessionState::closing);
      FUZZ_CHECK(!result.writes.empty() && saw_disconnect);
      break;
    }
    FUZZ_CHECK(!saw_disconnect);
    std::memmove(buffer.data(), buffer.data() + result.consumed, filled - result.consumed);
    filled -= result.consumed;
    if (session.state() != SessionState::closing) {
      // What is left is the start of one frame that is not complete yet and not too big.
      auto rest = split_frame(std::span<const std::uint8_t>(buffer.data(), filled), session.max_frame_size());
      FUZZ_CHECK(rest.has_value() && !rest->complete);
      FUZZ_CHECK(filled < session.max_buffered_bytes());
    }
    if (filled == buffer.size() && buffer.size() < max_buffer) buffer.resize(std::min(buffer.size() * 2, max_buffer));
  }
  outcome.state = session.state();
  outcome.error = session.error_status();

  // The agent's own goodbye (shutdown) is always a well-formed, small AGENT-DISCONNECT.
  if (session.state() != SessionState::closing) {
    const Bytes goodbye = session.disconnect(Status::normal, "agent shutting down");
    auto frame = decode_whole_frame(goodbye);
    FUZZ_CHECK(frame && frame->header.type == FrameType::agent_disconnect);
    FUZZ_CHECK(session.state() == SessionState::closing);
  }
  return outcome;
}

// The same stream fed in one call per complete frame boundary the session reports.
Outcome run_whole(std::span<const std::uint8_t> stream, std::uint32_t our_limit) {
  Session session(SessionLimits{our_limit});
  Outcome outcome;
  std::size_t offset = 0;
  while (offset < stream.size() && session.state() != SessionState::closing) {
    // The connection never holds more than max_buffered_bytes() at once.
    const auto window = stream.subspan(offset, std::min(stream.size() - offset, session.max_buffered_bytes()));
    auto result = session.feed(window);
    outcome.consumed += result.consumed;
    offset += result.consumed;
    outcome.writes.insert(outcome.writes.end(), result.writes.begin(), result.writes.end());
    outcome.notifies.insert(outcome.notifies.end(), result.notifies.begin(), result.notifies.end());
    if (result.close || result.consumed == 0) break;
  }
  outcome.state = session.state();
  outcome.error = session.error_status();
  return outcome;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t control = data[0];
  const auto stream = fuzz::as_bytes(data + 1, size - 1);
  // Our limit: the default, the smallest allowed, and one between HAProxy's usual values.
  static constexpr std::uint32_t limits[] = {16380, 256, 1024, 16380};
  const std::uint32_t our_limit = limits[(control >> 2) & 0x03];

  const Outcome chunked = run_chunked(stream, our_limit, control);
  const Outcome whole = run_whole(stream, our_limit);
  FUZZ_CHECK(chunked.writes == whole.writes);
  FUZZ_CHECK(same_notifies(chunked.notifies, whole.notifies));
  FUZZ_CHECK(chunked.state == whole.state);
  FUZZ_CHECK(chunked.error == whole.error);
  FUZZ_CHECK(chunked.consumed == whole.consumed);
  return 0;
}
