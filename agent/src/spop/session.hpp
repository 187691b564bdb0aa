// The SPOP connection state machine, sans I/O: bytes in, frames to write and decoded NOTIFYs out.
// The caller (agent/src/server) owns the socket and the read buffer. One Session per connection.
#pragma once

#include "spop/codec.hpp"
#include "spop/types.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace director::spop {

using Bytes = std::vector<std::uint8_t>;

struct SessionLimits {
  // Largest frame (excluding its 4-byte length) we accept and announce. HAProxy's default is
  // 16380; the negotiated value is min(HAProxy's, ours) and never below 256.
  std::uint32_t max_frame_size = 16380;
};

// A NOTIFY whose messages the application must answer with exactly one ACK carrying the same
// stream_id and frame_id (see Session::encode_ack). ACKs may be sent in any order.
struct Notify {
  std::uint64_t stream_id = 0;
  std::uint64_t frame_id = 0;
  std::vector<Message> messages;
};

// Why the agent ended a session for a protocol error: what it sent, and what it refused.
struct ProtocolError {
  Status status = Status::unknown;  // of the AGENT-DISCONNECT sent
  // What was wrong, in the decoder's words where it had any, e.g. "malformed NOTIFY: field runs
  // past the end of its frame".
  std::string detail;
  std::uint64_t frame_number = 0;  // the refused frame's position on the connection, from 1
  // The refused frame's header, when it could be decoded (not for a length above max-frame-size,
  // a zero-length frame or a malformed header).
  std::optional<FrameType> frame_type;
  std::uint64_t stream_id = 0;
  std::uint64_t frame_id = 0;
};

// What one call to Session::feed produced. Frames in `writes` must be written whole, each in one
// contiguous send, in order, before anything written later. When `close` is set, the caller
// writes `writes`, then closes the connection and calls feed no more; then exactly one of
// `error` and `haproxy_disconnect` says why (neither after a health check's HELLO).
struct FeedResult {
  std::size_t consumed = 0;  // bytes of the input consumed; the rest is an incomplete frame
  std::vector<Bytes> writes;
  std::vector<Notify> notifies;
  bool close = false;
  std::optional<ProtocolError> error;               // the agent ended the session for this
  std::optional<DisconnectInfo> haproxy_disconnect;  // HAProxy ended it, with this status and message
};

// An encoded ACK (Session::encode_ack).
struct EncodedAck {
  Bytes frame;
  // The actions did not fit in the negotiated max-frame-size and the placeholder went in their
  // place: HAProxy gets none of them (for a route request: no decision).
  bool actions_dropped = false;
};

enum class SessionState : std::uint8_t {
  awaiting_hello,  // nothing negotiated yet
  processing,      // HELLO done: NOTIFYs are accepted
  closing,         // a DISCONNECT was sent or received: the connection must be closed
};

class Session {
 public:
  explicit Session(SessionLimits limits = {});

  // Consumes as many complete frames from `input` as possible. An incomplete frame is not an
  // error: `consumed` stops before it and the caller feeds it again with more bytes appended.
  // Any protocol error yields an AGENT-DISCONNECT with the matching status and close = true.
  FeedResult feed(std::span<const std::uint8_t> input);

  // Encodes the ACK (FIN set) for a NOTIFY. An empty `actions` is answered with a harmless
  // placeholder action, because HAProxy 3.1 stalls on ACKs without actions. If the encoded
  // ACK exceeds the negotiated frame size, the actions are dropped for the placeholder, and
  // the result says so (actions_dropped).
  EncodedAck encode_ack(std::uint64_t stream_id, std::uint64_t frame_id,
                        std::span<const Action> actions) const;

  // AGENT-DISCONNECT to send when the agent itself closes (e.g. shutdown: Status::normal).
  // Moves the session to `closing`.
  Bytes disconnect(Status status, std::string_view message);

  SessionState state() const noexcept;
  // The negotiated max-frame-size (our limit until HELLO is done).
  std::uint32_t max_frame_size() const noexcept;
  // The largest number of bytes a caller ever needs to buffer: one whole frame with its length.
  std::size_t max_buffered_bytes() const noexcept;
  // True when the peer's HELLO was a health check (option spop-check).
  bool is_health_check() const noexcept;
  // The status of the AGENT-DISCONNECT with which feed() ended the session for a protocol
  // error (FeedResult::error has the details). std::nullopt while no error occurred, and when
  // the session ended normally (HAPROXY-DISCONNECT answered with status normal, or disconnect()).
  std::optional<Status> error_status() const noexcept;

 private:
  void handle_frame(std::span<const std::uint8_t> body, FeedResult& result);
  void handle_hello(std::span<const std::uint8_t> payload, FeedResult& result);
  // Answers with AGENT-DISCONNECT(status, message), closes, and reports the error in `result`
  // (message is its detail) against the frame being handled.
  void fail(FeedResult& result, Status status, std::string_view message);
  // HAProxy said goodbye: answers with AGENT-DISCONNECT normal and closes.
  void end_on_haproxy_disconnect(FeedResult& result, DisconnectInfo info);

  std::uint32_t our_max_frame_size_;
  std::uint32_t max_frame_size_;  // ours until HELLO, then the negotiated value
  SessionState state_ = SessionState::awaiting_hello;
  bool health_check_ = false;
  std::optional<Status> error_status_;  // set by fail()
  std::uint64_t frames_seen_ = 0;       // frames found in the input so far, the current one included
  std::optional<FrameHeader> current_header_;  // of the frame being handled, once decoded
};

}  // namespace director::spop
