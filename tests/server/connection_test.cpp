// Connection over a real loopback socket pair, with the real DecisionService and Resolver behind it.
// The agent side runs on two I/O threads (the connection on its strand, as Server accepts it);
// the test is HAProxy's side: a plain blocking POSIX socket driven from the test thread.
// Container hosts are looked up at a UDP port where nothing ever answers, so each check waits
// for the resolver's timeout and then answers dns-error: a pending answer of known duration.
#include "server/connection.hpp"

#include "config/config.hpp"
#include "metrics/metrics.hpp"
#include "server/decision_service.hpp"
#include "net/resolver.hpp"
#include "spop/codec.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/strand.hpp>
#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "../unit/spop/spop_test_support.hpp"

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;
using director::server::DecisionService;
using director::server::Connection;
using director::server::ConnectionLimits;
using director::spop::Bytes;
using director::spop::FrameType;
using Clock = std::chrono::steady_clock;

namespace {

// How long a check waits for the DNS server that never answers (one try).
constexpr auto dns_timeout = 600ms;
// Long enough for the agent to act on bytes already sent, on a busy machine.
constexpr auto settle = 200ms;
// The bound on anything the test waits for that should happen.
constexpr auto patience = 5s;

// HAProxy's side of the connection: a blocking socket with reads bounded in time.
class Peer {
 public:
  // `receive_buffer`: SO_RCVBUF, set before connecting (it sizes the TCP window).
  Peer(const tcp::endpoint& agent, std::optional<int> receive_buffer = std::nullopt)
      : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "socket");
    if (receive_buffer) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &*receive_buffer, sizeof(int));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(agent.port());
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
      throw std::system_error(errno, std::generic_category(), "connect");
    }
  }
  ~Peer() { ::close(fd_); }
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;

  void send_all(std::span<const std::uint8_t> bytes) {
    while (!bytes.empty()) {
      const auto sent = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (sent < 0) throw std::system_error(errno, std::generic_category(), "send");
      bytes = bytes.subspan(static_cast<std::size_t>(sent));
    }
  }

  // Sends what the socket takes without blocking: the number of bytes (0 when it is full).
  std::size_t send_some(std::span<const std::uint8_t> bytes) {
    const auto sent = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent >= 0) return static_cast<std::size_t>(sent);
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    throw std::system_error(errno, std::generic_category(), "send");
  }

  // The next whole frame (length prefix included), or std::nullopt when none came within
  // `timeout` or the agent closed the connection first.
  std::optional<Bytes> read_frame(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      const std::span<const std::uint8_t> unread = std::span(buffer_).subspan(read_);
      if (unread.size() >= director::spop::frame_length_size) {
        const std::size_t length = std::size_t{unread[0]} << 24 | std::size_t{unread[1]} << 16 |
                                   std::size_t{unread[2]} << 8 | std::size_t{unread[3]};
        const auto whole = director::spop::frame_length_size + length;
        if (unread.size() >= whole) {
          Bytes frame(unread.begin(), unread.begin() + static_cast<std::ptrdiff_t>(whole));
          read_ += whole;
          return frame;
        }
      }
      if (closed_ || !receive(deadline)) return std::nullopt;
    }
  }

  // True when the agent closes the connection within `timeout` (bytes still unread are an
  // error: they were never looked at).
  bool closed_within(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (!closed_) {
      if (!receive(deadline)) return false;
    }
    return read_ == buffer_.size();
  }

 private:
  // Appends what arrives before `deadline`; false when nothing did.
  bool receive(Clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    pollfd readable{fd_, POLLIN, 0};
    if (left <= 0ms || ::poll(&readable, 1, static_cast<int>(left.count())) <= 0) return false;
    std::uint8_t chunk[65536];
    const auto received = ::recv(fd_, chunk, sizeof chunk, 0);
    if (received <= 0) {
      closed_ = true;  // EOF, or a reset: either way the agent closed
      return true;
    }
    buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(read_));
    read_ = 0;
    buffer_.insert(buffer_.end(), chunk, chunk + received);
    return true;
  }

  int fd_;
  Bytes buffer_;
  std::size_t read_ = 0;  // bytes of buffer_ already returned as frames
  bool closed_ = false;
};

FrameType type_of(const Bytes& frame) { return spop_test::decode_whole(frame).header.type; }

// The value of the `reason` variable of an ACK to a route request.
std::string reason_of(const Bytes& ack) {
  const auto view = spop_test::decode_whole(ack);
  REQUIRE(view.header.type == FrameType::ack);
  for (const auto& action : spop_test::value_of(director::spop::decode_actions(view.payload))) {
    const auto* set = std::get_if<director::spop::SetVar>(&action);
    if (set && set->name == "reason") return std::get<std::string>(set->value);
  }
  return "";
}

Bytes notify_route(std::uint64_t stream_id, const std::string& user) {
  return spop_test::notify_frame(stream_id, 1, spop_test::route_messages(user));
}

// A NOTIFY without a route message: answered at once, with an ACK of a placeholder action.
Bytes notify_other(std::uint64_t stream_id) {
  return spop_test::notify_frame(stream_id, 1, {director::spop::Message{"something-else", {}}});
}

// What flood_until_the_agent_stops_reading() sent.
struct Flood {
  std::uint64_t whole_notifies = 0;  // NOTIFYs sent completely, stream ids 1 to whole_notifies
  Bytes unsent;                      // the rest of the next one, whose start was sent
};

// Sends NOTIFYs that are answered at once (stream ids 1, 2, ...) without reading an ACK, until
// the agent stops reading: the peer's sends block for a while. An agent that kept reading would
// queue without end: 64 MiB of NOTIFYs is far beyond every socket buffer on the way.
Flood flood_until_the_agent_stops_reading(Peer& peer) {
  constexpr std::size_t give_up_after = 64 * 1024 * 1024;
  Flood flood;
  Bytes current = notify_other(1);
  std::size_t current_sent = 0;
  std::size_t sent = 0;
  std::optional<Clock::time_point> blocked_since;
  while (sent < give_up_after) {
    const auto count = peer.send_some(std::span(current).subspan(current_sent));
    if (count > 0) {
      sent += count;
      current_sent += count;
      if (current_sent == current.size()) {
        current = notify_other(++flood.whole_notifies + 1);
        current_sent = 0;
      }
      blocked_since.reset();
      continue;
    }
    if (!blocked_since) blocked_since = Clock::now();
    if (Clock::now() - *blocked_since > settle) break;
    std::this_thread::sleep_for(5ms);
  }
  INFO("bytes of NOTIFYs sent before the agent stopped reading: " << sent);
  REQUIRE(sent < give_up_after);
  REQUIRE(flood.whole_notifies > 0);
  flood.unsent.assign(current.begin() + static_cast<std::ptrdiff_t>(current_sent), current.end());
  return flood;
}

// One Connection accepted from a Peer, on two I/O threads.
class Fixture {
 public:
  explicit Fixture(ConnectionLimits limits, std::optional<int> peer_receive_buffer = std::nullopt)
      : silent_dns_(io_, asio::ip::udp::endpoint(asio::ip::address_v4::loopback(), 0)),
        metrics_("test", std::chrono::system_clock::now()),
        resolver_(io_.get_executor(), resolver_options()),
        decision_service_(io_.get_executor(), config(), resolver_, metrics_),
        acceptor_(io_, tcp::endpoint(asio::ip::address_v4::loopback(), 0)) {
    peer_.emplace(acceptor_.local_endpoint(), peer_receive_buffer);
    auto socket = acceptor_.accept(asio::make_strand(io_));
    connection_ = std::make_shared<Connection>(std::move(socket), decision_service_, metrics_, limits,
                                               [this](Connection&) { closed_ = true; });
    connection_->start();
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { io_.run(); });
  }

  ~Fixture() {
    work_.reset();
    resolver_.shutdown();
    io_.stop();
    for (auto& thread : threads_) thread.join();
  }

  Peer& peer() { return *peer_; }
  Connection& connection() { return *connection_; }
  // on_closed has run: the agent closed its socket.
  bool closed() const { return closed_; }
  // on_closed runs within `timeout` (it runs just after the peer sees the close).
  bool closed_within(std::chrono::milliseconds timeout) const {
    const auto deadline = Clock::now() + timeout;
    while (!closed_ && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
    return closed_;
  }

  // Completes the HELLO.
  void hello() {
    peer().send_all(spop_test::hello_frame(spop_test::standard_hello_items()));
    const auto answer = peer().read_frame(patience);
    REQUIRE(answer);
    REQUIRE(type_of(*answer) == FrameType::agent_hello);
  }

  // Waits until `count` requests wait on checks (the connection has read their NOTIFYs).
  void wait_for_waiters(std::size_t count) {
    const auto deadline = Clock::now() + patience;
    while (decision_service_.stats().checks_started < count || waiters() < count) {
      REQUIRE(Clock::now() < deadline);
      std::this_thread::sleep_for(5ms);
    }
  }

 private:
  std::size_t waiters() const {
    std::size_t total = 0;
    decision_service_.inspect([&](const director::decision::Director& director) {
      for (const auto& user : director.users(0, 100)) total += user.waiters;
    });
    return total;
  }

  director::net::ResolverOptions resolver_options() const {
    director::net::ResolverOptions options;
    options.servers = {silent_dns_.local_endpoint()};
    options.timeout = dns_timeout;
    options.tries = 1;
    return options;
  }

  static director::config::Config config() {
    director::config::Config config;
    config.decision.stale_if_error = 0s;
    return config;
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  asio::ip::udp::socket silent_dns_;  // receives lookups, never answers
  director::metrics::Metrics metrics_;
  director::net::Resolver resolver_;
  DecisionService decision_service_;
  tcp::acceptor acceptor_;
  std::optional<Peer> peer_;
  std::shared_ptr<Connection> connection_;
  std::atomic<bool> closed_{false};
  std::vector<std::thread> threads_;
};

}  // namespace

TEST_CASE("a peer without HAPROXY-HELLO gets AGENT-DISCONNECT timeout, then the close", "[connection]") {
  ConnectionLimits limits;
  limits.hello_timeout = 200ms;
  const auto started = Clock::now();
  Fixture fixture(limits);

  const auto frame = fixture.peer().read_frame(patience);
  REQUIRE(frame);
  CHECK(Clock::now() - started >= limits.hello_timeout);
  CHECK(spop_test::disconnect_status(*frame) == static_cast<std::uint32_t>(director::spop::Status::timeout));
  CHECK(fixture.peer().closed_within(patience));
  CHECK(fixture.closed_within(patience));
}

TEST_CASE("a peer that completes HELLO in time is not disconnected", "[connection]") {
  ConnectionLimits limits;
  limits.hello_timeout = 200ms;
  Fixture fixture(limits);
  fixture.hello();
  CHECK_FALSE(fixture.peer().read_frame(limits.hello_timeout + settle));
  CHECK_FALSE(fixture.closed());
}

TEST_CASE("graceful stop: pending answers go out, then AGENT-DISCONNECT normal, then the close",
          "[connection]") {
  Fixture fixture(ConnectionLimits{});
  fixture.hello();
  fixture.peer().send_all(notify_route(1, "alice"));
  fixture.peer().send_all(notify_route(3, "bob"));
  fixture.wait_for_waiters(2);

  const auto stopped = Clock::now();
  fixture.connection().stop(5s);
  // Read no more: a NOTIFY sent after the stop is not answered.
  fixture.peer().send_all(notify_other(5));

  std::vector<std::uint64_t> answered;
  for (int i = 0; i < 2; ++i) {
    const auto ack = fixture.peer().read_frame(patience);
    REQUIRE(ack);
    CHECK(reason_of(*ack) == "dns-error");
    answered.push_back(spop_test::decode_whole(*ack).header.stream_id);
  }
  CHECK_THAT(answered, Catch::UnorderedEquals(std::vector<std::uint64_t>{1, 3}));
  CHECK(Clock::now() - stopped < 5s);  // the answers, not the grace, ended the wait

  const auto goodbye = fixture.peer().read_frame(patience);
  REQUIRE(goodbye);
  CHECK(spop_test::disconnect_status(*goodbye) == static_cast<std::uint32_t>(director::spop::Status::normal));
  CHECK(fixture.peer().closed_within(patience));
  CHECK(fixture.closed_within(patience));
}

TEST_CASE("reading pauses at max_pending_answers and resumes when an answer goes out", "[connection]") {
  ConnectionLimits limits;
  limits.max_pending_answers = 2;
  Fixture fixture(limits);
  fixture.hello();
  fixture.peer().send_all(notify_route(1, "alice"));
  fixture.peer().send_all(notify_route(3, "bob"));
  fixture.wait_for_waiters(2);
  const auto paused = Clock::now();

  // Would be answered at once if it were read.
  fixture.peer().send_all(notify_other(5));
  CHECK_FALSE(fixture.peer().read_frame(settle));

  std::vector<std::uint64_t> order;
  for (int i = 0; i < 3; ++i) {
    const auto ack = fixture.peer().read_frame(patience);
    REQUIRE(ack);
    order.push_back(spop_test::decode_whole(*ack).header.stream_id);
  }
  // Read only once a pending answer went out (then at once, before the other one, perhaps).
  CHECK(order.front() != 5);
  CHECK_THAT(order, Catch::UnorderedEquals(std::vector<std::uint64_t>{1, 3, 5}));
  CHECK(Clock::now() - paused >= dns_timeout - 50ms);
  CHECK_FALSE(fixture.closed());
}

TEST_CASE("reading pauses at max_queued_bytes while the peer does not read, and resumes",
          "[connection]") {
  ConnectionLimits limits;
  limits.max_queued_bytes = 4096;
  Fixture fixture(limits, 4096);
  fixture.hello();

  auto flood = flood_until_the_agent_stops_reading(fixture.peer());

  // Now the peer reads: the agent resumes and answers every whole NOTIFY, in order.
  std::uint64_t answered_in_order = 0;  // counted, not asserted one by one: there are many
  for (std::uint64_t stream_id = 1; stream_id <= flood.whole_notifies; ++stream_id) {
    const auto ack = fixture.peer().read_frame(patience);
    if (!ack) break;
    const auto view = director::spop::decode_whole_frame(*ack);
    if (!view || view->header.type != FrameType::ack || view->header.stream_id != stream_id) break;
    ++answered_in_order;
  }
  REQUIRE(answered_in_order == flood.whole_notifies);
  // The rest of the last one: answered too once it is whole.
  fixture.peer().send_all(flood.unsent);
  const auto last = fixture.peer().read_frame(patience);
  REQUIRE(last);
  CHECK(spop_test::decode_whole(*last).header.stream_id == flood.whole_notifies + 1);
  CHECK_FALSE(fixture.closed());
}

TEST_CASE("a stop with a peer that never reads closes after closing_write_timeout", "[connection]") {
  ConnectionLimits limits;
  limits.max_queued_bytes = 4096;
  limits.closing_write_timeout = 300ms;
  Fixture fixture(limits, 4096);
  fixture.hello();
  flood_until_the_agent_stops_reading(fixture.peer());

  const auto stopped = Clock::now();
  fixture.connection().stop(5s);
  REQUIRE(fixture.closed_within(patience));
  const auto took = Clock::now() - stopped;
  CHECK(took >= limits.closing_write_timeout);
  CHECK(took < limits.closing_write_timeout + 1s);  // not the 5 s grace
}
