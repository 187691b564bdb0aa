#include "server/connection.hpp"

#include "log/log.hpp"
#include "net/awaitable.hpp"
#include "route/route_handler.hpp"
#include "spop/codec.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <vector>

namespace director::server {

using net::nothrow_awaitable;
namespace {

// The read buffer starts at this size and doubles, up to one whole frame, only when a frame
// does not fit. HAProxy's frames are a few hundred bytes: an idle connection then costs a few
// KiB instead of max-frame-size, which matters with thousands of them (a reload burst, or a
// peer opening connections on purpose: tests/e2e/test_spop_faults.py).
constexpr std::size_t initial_read_buffer = 4096;

// HAProxy's DISCONNECT message is logged up to this many bytes: it comes from the network.
constexpr std::size_t max_logged_message = 256;

// The most one write system call is asked to take (Asio's transfer_all uses the same).
constexpr std::size_t max_write_size = 65536;

// The type byte of a whole frame (length prefix included), as the session encoded it.
spop::FrameType type_of(const spop::Bytes& frame) {
  return frame.size() > spop::frame_length_size ? static_cast<spop::FrameType>(frame[spop::frame_length_size])
                                                : spop::FrameType::fragment;
}

// Counts the frames a feed() consumed: `consumed` holds whole frames, back to back (a frame of
// length 0, which the session rejects, has no type byte and counts as "other").
void count_received_frames(std::span<const std::uint8_t> consumed, metrics::Metrics& metrics) {
  while (!consumed.empty()) {
    const auto frame = spop::split_frame(consumed, std::numeric_limits<std::uint32_t>::max());
    if (!frame || !frame->complete) return;  // cannot happen for consumed bytes
    metrics.frame_received(frame->body.empty() ? spop::FrameType::fragment
                                               : static_cast<spop::FrameType>(frame->body.front()));
    consumed = consumed.subspan(frame->wire_size());
  }
}

}  // namespace

Connection::Connection(boost::asio::ip::tcp::socket socket, DecisionService& decision_service,
                       metrics::Metrics& metrics, ConnectionLimits limits, std::function<void(Connection&)> on_closed)
    : socket_(std::move(socket)),
      decision_service_(decision_service),
      metrics_(metrics),
      limits_(limits),
      on_closed_(std::move(on_closed)),
      session_(spop::SessionLimits{limits.max_frame_size}),
      writer_wake_(socket_.get_executor(), std::chrono::steady_clock::time_point::max()),
      reader_wake_(socket_.get_executor(), std::chrono::steady_clock::time_point::max()),
      hello_deadline_(socket_.get_executor(), limits.hello_timeout),
      write_watch_(socket_.get_executor(), std::chrono::steady_clock::time_point::max()) {}

auto Connection::close_if_thrown(std::string_view coroutine) {
  return [self = shared_from_this(), log_thrown = net::log_if_thrown(coroutine)](const std::exception_ptr& thrown) {
    if (!thrown) return;
    log_thrown(thrown);
    self->close_now();
  };
}

void Connection::start() {
  boost::system::error_code ignored;
  socket_.set_option(boost::asio::ip::tcp::no_delay(true), ignored);
  auto self = shared_from_this();
  const auto executor = socket_.get_executor();
  boost::asio::co_spawn(executor, [self]() { return self->read_loop(); }, close_if_thrown("spop read loop"));
  boost::asio::co_spawn(executor, [self]() { return self->write_loop(); }, close_if_thrown("spop write loop"));
  boost::asio::co_spawn(executor, [self]() { return self->enforce_hello_timeout(); },
                        close_if_thrown("spop hello timeout"));
  boost::asio::co_spawn(executor, [self]() { return self->enforce_closing_write_timeout(); },
                        close_if_thrown("spop closing write timeout"));
}

boost::asio::awaitable<void> Connection::enforce_hello_timeout() {
  const auto [cancelled] = co_await hello_deadline_.async_wait(nothrow_awaitable);
  if (cancelled || closed_ || closing_ || stopping_) co_return;
  if (session_.state() != spop::SessionState::awaiting_hello) co_return;
  metrics_.protocol_error(spop::Status::timeout);
  spop::ProtocolError error;  // frame_number 0: no frame was refused, none came in time
  error.status = spop::Status::timeout;
  error.detail = "no HAPROXY-HELLO within " + std::to_string(limits_.hello_timeout.count()) + " ms";
  log_protocol_error(error);
  enqueue(session_.disconnect(spop::Status::timeout, "no HAPROXY-HELLO in time"));
  close_after_writes();
}

boost::asio::awaitable<void> Connection::enforce_closing_write_timeout() {
  using Clock = std::chrono::steady_clock;
  std::optional<Clock::time_point> winding_down_since;
  while (!closed_) {
    if ((closing_ || stopping_) && !winding_down_since) winding_down_since = Clock::now();
    auto deadline = Clock::time_point::max();
    if (winding_down_since && writing_) {
      deadline = std::max(*winding_down_since, last_write_progress_) + limits_.closing_write_timeout;
    }
    if (Clock::now() >= deadline) {
      log(LogLevel::warn, "closing an SPOP connection whose peer stopped reading",
          {{"peer", peer_name()},
           {"unwritten_bytes", std::to_string(queued_bytes_)},
           {"closing_write_timeout_ms", std::to_string(limits_.closing_write_timeout.count())}});
      close_now();
      co_return;
    }
    // Woken early (cancelled) whenever the connection starts winding down or a write starts.
    write_watch_.expires_at(deadline);
    co_await write_watch_.async_wait(nothrow_awaitable);
  }
}

void Connection::stop(std::chrono::milliseconds grace) {
  boost::asio::post(socket_.get_executor(), [self = shared_from_this(), grace] {
    if (self->stopping_ || self->closing_) return;
    self->stopping_ = true;
    self->stop_deadline_ = std::chrono::steady_clock::now() + grace;
    self->read_cancel_.emit(boost::asio::cancellation_type::terminal);
    self->reader_wake_.cancel();
    self->write_watch_.cancel();
  });
}

boost::asio::awaitable<void> Connection::wait_until_readable() {
  while (!stopping_ && !closing_ &&
         (pending_answers_ >= limits_.max_pending_answers || queued_bytes_ >= limits_.max_queued_bytes)) {
    reader_wake_.expires_at(std::chrono::steady_clock::time_point::max());
    co_await reader_wake_.async_wait(nothrow_awaitable);
  }
}

boost::asio::awaitable<void> Connection::read_loop() {
  const std::size_t max_buffer = session_.max_buffered_bytes();
  std::vector<std::uint8_t> buffer(std::min(initial_read_buffer, max_buffer));
  std::size_t filled = 0;
  while (!closing_ && !stopping_) {
    co_await wait_until_readable();
    if (closing_ || stopping_) break;
    const auto [error, received] = co_await socket_.async_read_some(
        boost::asio::buffer(buffer.data() + filled, buffer.size() - filled),
        boost::asio::bind_cancellation_slot(read_cancel_.slot(), nothrow_awaitable));
    if (error) {
      // EOF, reset: HAProxy is gone, nothing to say to it. Not when the read was cancelled
      // by stop() or close_after_writes(): the writer still has frames to send, then closes.
      if (!stopping_ && !closing_) close_now();
      break;
    }
    if (stopping_ || closing_) break;  // read as the stop came: too late to start work
    filled += received;
    if (session_.state() == spop::SessionState::closing) {
      filled = 0;  // after a health check's AGENT-HELLO: nothing more to parse, wait for the close
      continue;
    }
    const auto arrived = std::chrono::steady_clock::now();  // the decision clock starts here
    auto result = session_.feed(std::span<const std::uint8_t>(buffer.data(), filled));
    count_received_frames(std::span<const std::uint8_t>(buffer.data(), result.consumed), metrics_);
    if (result.consumed > 0) {
      std::memmove(buffer.data(), buffer.data() + result.consumed, filled - result.consumed);
      filled -= result.consumed;
    }
    // A full buffer holds part of one frame: make room for the rest (a full buffer of
    // max_buffer bytes always holds a whole frame, or the session has refused it).
    if (filled == buffer.size() && buffer.size() < max_buffer) {
      buffer.resize(std::min(buffer.size() * 2, max_buffer));
    }
    handle(result, arrived);
  }
  if (!stopping_ || closing_) co_return;

  // Graceful stop: let pending answers go out, then say goodbye.
  while (pending_answers_ > 0 && std::chrono::steady_clock::now() < stop_deadline_) {
    reader_wake_.expires_at(stop_deadline_);
    co_await reader_wake_.async_wait(nothrow_awaitable);
  }
  if (!closing_) {
    enqueue(session_.disconnect(spop::Status::normal, "agent shutting down"));
    close_after_writes();
  }
}

void Connection::handle(spop::FeedResult& result, std::chrono::steady_clock::time_point arrived) {
  for (auto& frame : result.writes) enqueue(std::move(frame));
  if (result.close) {
    // A protocol error or HAProxy's goodbye ends the session: the AGENT-DISCONNECT is the last
    // frame, and NOTIFYs decoded before it are not answered.
    if (const auto& error = result.error) {
      metrics_.protocol_error(error->status);
      log_protocol_error(*error);
    } else if (const auto& goodbye = result.haproxy_disconnect) {
      log(LogLevel::info, "HAProxy closed the SPOP connection (HAPROXY-DISCONNECT)",
          {{"peer", peer_name()},
           {"status", std::to_string(goodbye->status_code)},
           {"message", std::string_view(goodbye->message).substr(0, max_logged_message)}});
    }
    close_after_writes();
    return;
  }
  for (auto& notify : result.notifies) {
    const auto request = route::find_route_request(notify);
    if (!request) {
      enqueue(session_.encode_ack(notify.stream_id, notify.frame_id, {}).frame);
      continue;
    }
    const auto stream_id = notify.stream_id;
    const auto frame_id = notify.frame_id;
    auto answer = decision_service_.decide(request->username, request->retry, [&] {
      ++pending_answers_;
      return [weak = weak_from_this(), stream_id, frame_id, arrived](const decision::Answer& late) {
        if (auto self = weak.lock()) {
          boost::asio::post(self->socket_.get_executor(), [self, stream_id, frame_id, late, arrived] {
            --self->pending_answers_;
            self->answer(stream_id, frame_id, late, arrived);
            self->reader_wake_.cancel();
          });
        }
      };
    });
    if (answer) this->answer(stream_id, frame_id, *answer, arrived, request->username);
  }
}

void Connection::answer(std::uint64_t stream_id, std::uint64_t frame_id, const decision::Answer& answer,
                        std::chrono::steady_clock::time_point arrived,
                        std::optional<std::string_view> username) {
  if (closed_ || closing_) return;
  const auto actions = route::to_actions(answer, username);
  auto ack = session_.encode_ack(stream_id, frame_id, actions);
  if (ack.actions_dropped) {
    // HAProxy gets the placeholder, not this decision: not counted as one.
    metrics_.ack_actions_dropped();
    log(LogLevel::warn, "ACK too large for the negotiated max-frame-size: sent without the decision",
        {{"peer", peer_name()},
         {"stream_id", std::to_string(stream_id)},
         {"frame_id", std::to_string(frame_id)},
         {"max_frame_size", std::to_string(session_.max_frame_size())},
         {"label", answer.label},
         {"reason", decision::to_string(answer.reason)}});
  } else {
    metrics_.decision_answered(answer.reason, std::chrono::steady_clock::now() - arrived);
  }
  enqueue(std::move(ack.frame));
}

void Connection::log_protocol_error(const spop::ProtocolError& error) {
  const auto frame_type = error.frame_type ? spop::to_string(*error.frame_type) : std::string_view("-");
  log(LogLevel::warn, "SPOP protocol error: AGENT-DISCONNECT sent, closing the connection",
      {{"peer", peer_name()},
       {"status", std::to_string(static_cast<std::uint32_t>(error.status))},
       {"error", spop::describe(error.status)},
       {"detail", error.detail},
       {"frame", std::to_string(error.frame_number)},
       {"frame_type", frame_type},
       {"stream_id", std::to_string(error.stream_id)},
       {"frame_id", std::to_string(error.frame_id)}});
}

std::string Connection::peer_name() const {
  boost::system::error_code error;
  const auto peer = socket_.remote_endpoint(error);
  if (error) return "-";
  std::ostringstream out;
  out << peer;
  return out.str();
}

void Connection::enqueue(spop::Bytes frame) {
  if (closed_) return;
  queued_bytes_ += frame.size();
  write_queue_.push_back(std::move(frame));
  writer_wake_.cancel();
}

void Connection::close_after_writes() {
  closing_ = true;
  read_cancel_.emit(boost::asio::cancellation_type::terminal);
  writer_wake_.cancel();
  write_watch_.cancel();
}

void Connection::close_now() {
  if (closed_) return;
  closed_ = true;
  closing_ = true;
  // A write in flight still holds its bytes: write_loop() subtracts them when it completes.
  for (const auto& frame : write_queue_) queued_bytes_ -= frame.size();
  write_queue_.clear();
  boost::system::error_code ignored;
  socket_.shutdown(boost::asio::ip::tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
  writer_wake_.cancel();
  reader_wake_.cancel();
  hello_deadline_.cancel();
  write_watch_.cancel();
  if (on_closed_) on_closed_(*this);
}

boost::asio::awaitable<void> Connection::write_loop() {
  std::vector<spop::Bytes> batch;
  std::vector<boost::asio::const_buffer> buffers;
  while (!closed_) {
    if (write_queue_.empty()) {
      if (closing_) break;
      writer_wake_.expires_at(std::chrono::steady_clock::time_point::max());
      co_await writer_wake_.async_wait(nothrow_awaitable);
      continue;
    }
    // Everything queued goes out in one gathered write: frames stay whole and in order.
    batch.clear();
    buffers.clear();
    std::size_t batch_bytes = 0;
    while (!write_queue_.empty()) {
      batch_bytes += write_queue_.front().size();
      batch.push_back(std::move(write_queue_.front()));
      write_queue_.pop_front();
    }
    // Counted before the write starts: HAProxy may act on these frames before this coroutine
    // resumes, and a scrape that follows must already see them.
    for (const auto& frame : batch) {
      buffers.emplace_back(boost::asio::buffer(frame));
      metrics_.frame_sent(type_of(frame));
    }
    writing_ = true;
    write_watch_.cancel();
    // The completion condition sees every partial write: it records the progress that
    // enforce_closing_write_timeout() measures, and asks for everything (transfer_all).
    const auto [error, written] = co_await boost::asio::async_write(
        socket_, buffers,
        [this](const boost::system::error_code& failed, std::size_t) -> std::size_t {
          last_write_progress_ = std::chrono::steady_clock::now();
          return failed ? 0 : max_write_size;
        },
        nothrow_awaitable);
    writing_ = false;
    // The whole batch, written or not: on an error the connection closes and the rest is dropped.
    queued_bytes_ -= batch_bytes;
    reader_wake_.cancel();
    if (error) break;
  }
  close_now();
}

}  // namespace director::server
