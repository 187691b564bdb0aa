// One SPOP connection from HAProxy: a reader and a writer coroutine on the connection's strand
// around a spop::Session (which does all protocol work). Frames are queued whole and written in
// order, never interleaved. Memory is bounded: one frame of read buffer, and reading pauses
// while too many answers are pending or too many bytes wait to be written. Time is bounded
// too: a peer that does not say HELLO, or that stops reading while the connection winds down,
// is closed.
#pragma once

#include "metrics/metrics.hpp"
#include "server/decision_service.hpp"
#include "spop/session.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace director::server {

struct ConnectionLimits {
  std::uint32_t max_frame_size = 16380;
  std::size_t max_pending_answers = 4096;     // NOTIFYs read but not yet answered
  std::size_t max_queued_bytes = 1024 * 1024; // ACK bytes waiting to be written
  // A peer that has not completed HAPROXY-HELLO this long after the accept gets
  // AGENT-DISCONNECT (status timeout) and is closed. HAProxy sends its HELLO at once.
  std::chrono::milliseconds hello_timeout{5000};
  // While the connection winds down (stop, HELLO timeout, protocol error: nothing more is
  // read, the last frames are written), a write that makes no progress for this long, counted
  // from the start of the wind-down or the write's last progress, means the peer has stopped
  // reading: the connection is closed without its last frames, and a warning says so. Before
  // that, a peer that does not read is only held by backpressure (reading pauses).
  std::chrono::milliseconds closing_write_timeout{1000};
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  // `on_closed` runs once, on the connection's strand, after the socket is closed. Frames,
  // protocol errors and decisions (route requests answered) are reported to `metrics`.
  Connection(boost::asio::ip::tcp::socket socket, DecisionService& decision_service, metrics::Metrics& metrics,
             ConnectionLimits limits, std::function<void(Connection&)> on_closed);

  void start();
  // Graceful stop: stop reading, answer what is pending (for at most `grace`), send
  // AGENT-DISCONNECT (normal) and close. Safe from any thread.
  void stop(std::chrono::milliseconds grace);

 private:
  boost::asio::awaitable<void> read_loop();
  boost::asio::awaitable<void> write_loop();
  boost::asio::awaitable<void> wait_until_readable();
  boost::asio::awaitable<void> enforce_hello_timeout();
  boost::asio::awaitable<void> enforce_closing_write_timeout();
  // The completion of the connection's coroutines: an exception is logged as `coroutine` and
  // closes the connection.
  auto close_if_thrown(std::string_view coroutine);
  // `arrived`: when the bytes holding result's NOTIFYs were read.
  void handle(spop::FeedResult& result, std::chrono::steady_clock::time_point arrived);
  // Queues the ACK of a route request whose NOTIFY arrived at `arrived`. `username`: the
  // request's, for an answer decided at once (route::to_actions shows it when refused).
  void answer(std::uint64_t stream_id, std::uint64_t frame_id, const decision::Answer& answer,
              std::chrono::steady_clock::time_point arrived,
              std::optional<std::string_view> username = std::nullopt);
  void enqueue(spop::Bytes frame);
  void log_protocol_error(const spop::ProtocolError& error);
  // "ip:port" of HAProxy's end, for logs; "-" once the socket is closed.
  std::string peer_name() const;
  void close_after_writes();
  void close_now();

  boost::asio::ip::tcp::socket socket_;
  DecisionService& decision_service_;
  metrics::Metrics& metrics_;
  ConnectionLimits limits_;
  std::function<void(Connection&)> on_closed_;
  spop::Session session_;

  // All below is touched only on the strand.
  std::deque<spop::Bytes> write_queue_;
  std::size_t queued_bytes_ = 0;  // of the frames in write_queue_ and those being written
  bool writing_ = false;          // a write is in flight
  std::chrono::steady_clock::time_point last_write_progress_{};
  std::size_t pending_answers_ = 0;
  bool closing_ = false;   // no more reads; close once the queue is written
  bool closed_ = false;
  bool stopping_ = false;  // stop() requested
  std::chrono::steady_clock::time_point stop_deadline_{};
  boost::asio::steady_timer writer_wake_;
  boost::asio::steady_timer reader_wake_;
  boost::asio::steady_timer hello_deadline_;
  boost::asio::steady_timer write_watch_;  // wakes enforce_closing_write_timeout()
  boost::asio::cancellation_signal read_cancel_;
};

}  // namespace director::server
