// probe() against real listeners on 127.0.0.1 only: accepting, closed, a full accept queue that
// drops SYNs, and small HTTP servers that answer, fail, babble, hang up or never answer.
#include "net/prober.hpp"

#include "net/awaitable.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <deque>
#include <string>
#include <vector>

#include "../../server/asio_test_support.hpp"

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;
using director::net::probe;
using director::net::ProbeOptions;
using director::net::ProbeOutcome;
using director::net::ProbeResult;
using director::test::gather;
using director::test::run_until_complete;

namespace Catch {
template <>
struct StringMaker<ProbeOutcome> {
  static std::string convert(ProbeOutcome outcome) {
    switch (outcome) {
      case ProbeOutcome::ok:
        return "ok";
      case ProbeOutcome::refused:
        return "refused";
      case ProbeOutcome::timeout:
        return "timeout";
      case ProbeOutcome::failed:
        return "failed";
      case ProbeOutcome::not_run:
        return "not_run";
    }
    return "?";
  }
};
}  // namespace Catch

namespace {

using director::net::nothrow_awaitable;

const tcp::endpoint any_loopback_port{asio::ip::address_v4::loopback(), 0};

ProbeOptions tcp_only(std::chrono::milliseconds timeout = 300ms) {
  ProbeOptions options;
  options.timeout = timeout;
  return options;
}

ProbeOptions http(std::string path, std::chrono::milliseconds timeout = 300ms) {
  ProbeOptions options;
  options.timeout = timeout;
  options.http_path = std::move(path);
  options.http_host = "vscode-jack:8080";
  return options;
}

// Accepts every connection and keeps it open, silent, until the test ends.
class AcceptingListener {
 public:
  explicit AcceptingListener(asio::io_context& io) : acceptor_(io, any_loopback_port) {
    asio::co_spawn(io, accept_forever(), asio::detached);
  }
  tcp::endpoint endpoint() const { return acceptor_.local_endpoint(); }

 private:
  asio::awaitable<void> accept_forever() {
    for (;;) {
      auto [error, socket] = co_await acceptor_.async_accept(nothrow_awaitable);
      if (error) co_return;
      accepted_.push_back(std::move(socket));
    }
  }
  tcp::acceptor acceptor_;
  std::deque<tcp::socket> accepted_;
};

// A loopback port with no listener (it had one a moment ago): connecting is refused.
tcp::endpoint closed_port() {
  asio::io_context io;
  tcp::acceptor acceptor(io, any_loopback_port);
  return acceptor.local_endpoint();
}

// A listener with backlog 0 whose accept queue holds one connection that is never accepted.
// Linux then drops further SYNs (net.ipv4.tcp_abort_on_overflow = 0, the default), so a
// connect to it neither succeeds nor fails: it times out.
class FullListener {
 public:
  explicit FullListener(asio::io_context& io) : acceptor_(io) {
    acceptor_.open(tcp::v4());
    acceptor_.bind(any_loopback_port);
    acceptor_.listen(0);
  }
  tcp::endpoint endpoint() const { return acceptor_.local_endpoint(); }

  // Fills the accept queue: one connection completes, two more are left hanging.
  asio::awaitable<void> fill() {
    const auto executor = co_await asio::this_coro::executor;
    auto& first = fillers_.emplace_back(executor);
    co_await first.async_connect(endpoint(), nothrow_awaitable);
    for (int i = 0; i < 2; ++i) {
      fillers_.emplace_back(executor).async_connect(endpoint(), [](boost::system::error_code) {});
    }
  }

 private:
  tcp::acceptor acceptor_;
  std::deque<tcp::socket> fillers_;
};

// A one-trick HTTP server: reads a request head, then answers with `chunks` (pausing between
// them) and closes, closes at once, or never answers. Records what it saw.
class HttpStub {
 public:
  enum class Behaviour { answer, hang_up, never_answer };

  HttpStub(asio::io_context& io, std::vector<std::string> chunks,
           Behaviour behaviour = Behaviour::answer)
      : acceptor_(io, any_loopback_port), chunks_(std::move(chunks)), behaviour_(behaviour) {
    asio::co_spawn(io, accept_forever(), asio::detached);
  }
  HttpStub(asio::io_context& io, Behaviour behaviour) : HttpStub(io, {}, behaviour) {}

  tcp::endpoint endpoint() const { return acceptor_.local_endpoint(); }
  const std::vector<std::string>& requests() const { return requests_; }
  int closed_by_client() const { return closed_by_client_; }

 private:
  asio::awaitable<void> accept_forever() {
    for (;;) {
      auto [error, socket] = co_await acceptor_.async_accept(nothrow_awaitable);
      if (error) co_return;
      asio::co_spawn(acceptor_.get_executor(), serve(std::move(socket)), asio::detached);
    }
  }

  asio::awaitable<void> serve(tcp::socket socket) {
    asio::streambuf head;
    auto [error, size] =
        co_await asio::async_read_until(socket, head, "\r\n\r\n", nothrow_awaitable);
    if (error) co_return;
    requests_.emplace_back(asio::buffers_begin(head.data()),
                           asio::buffers_begin(head.data()) + static_cast<std::ptrdiff_t>(size));
    switch (behaviour_) {
      case Behaviour::answer: {
        asio::steady_timer pause(socket.get_executor());
        for (std::size_t i = 0; i < chunks_.size(); ++i) {
          if (i > 0) {
            pause.expires_after(20ms);
            co_await pause.async_wait(nothrow_awaitable);
          }
          co_await asio::async_write(socket, asio::buffer(chunks_[i]), nothrow_awaitable);
        }
        break;
      }
      case Behaviour::hang_up:
        break;
      case Behaviour::never_answer: {
        std::array<char, 64> ignored{};
        for (;;) {
          auto [read_error, count] =
              co_await socket.async_read_some(asio::buffer(ignored), nothrow_awaitable);
          if (read_error) break;
        }
        ++closed_by_client_;  // only the client can end this connection
        break;
      }
    }
  }

  tcp::acceptor acceptor_;
  std::vector<std::string> chunks_;
  Behaviour behaviour_;
  std::vector<std::string> requests_;
  int closed_by_client_ = 0;
};

ProbeResult run_probe(asio::io_context& io, tcp::endpoint endpoint, ProbeOptions options) {
  return run_until_complete(io, probe(endpoint, std::move(options)));
}

asio::awaitable<void> sleep_for(std::chrono::milliseconds duration) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  co_await timer.async_wait(nothrow_awaitable);
}

}  // namespace

TEST_CASE("a listening port is ok", "[prober]") {
  asio::io_context io;
  AcceptingListener listener(io);
  const ProbeResult result = run_probe(io, listener.endpoint(), tcp_only());
  CHECK(result.outcome == ProbeOutcome::ok);
  CHECK(result.latency > 0ns);
  CHECK(result.latency < 300ms);
}

TEST_CASE("a closed port is refused", "[prober]") {
  asio::io_context io;
  CHECK(run_probe(io, closed_port(), tcp_only()).outcome == ProbeOutcome::refused);
  CHECK(run_probe(io, closed_port(), http("/")).outcome == ProbeOutcome::refused);
}

TEST_CASE("a connect that never completes is a timeout", "[prober]") {
  asio::io_context io;
  FullListener listener(io);
  run_until_complete(io, listener.fill());
  const auto started = std::chrono::steady_clock::now();
  const ProbeResult result = run_probe(io, listener.endpoint(), tcp_only(200ms));
  CHECK(result.outcome == ProbeOutcome::timeout);
  CHECK(result.latency >= 200ms);
  CHECK(std::chrono::steady_clock::now() - started < 1s);
}

TEST_CASE("an HTTP status below 500 is ok", "[prober]") {
  const std::string status_line =
      GENERATE(as<std::string>{}, "HTTP/1.1 200 OK", "HTTP/1.1 302 Found", "HTTP/1.1 404 Not Found",
               "HTTP/1.0 204", "HTTP/1.1 401 ");
  INFO(status_line);
  asio::io_context io;
  HttpStub server(io, {status_line + "\r\nContent-Length: 0\r\n\r\n"});
  CHECK(run_probe(io, server.endpoint(), http("/healthz")).outcome == ProbeOutcome::ok);
  REQUIRE(server.requests().size() == 1);
  CHECK(server.requests()[0] ==
        "GET /healthz HTTP/1.1\r\nHost: vscode-jack:8080\r\nConnection: close\r\n"
        "User-Agent: container-director\r\n\r\n");
}

TEST_CASE("a status line arriving in pieces is read to its end", "[prober]") {
  asio::io_context io;
  HttpStub server(io, {"HTT", "P/1.1 20", "0 OK", "\r\n\r\n"});
  CHECK(run_probe(io, server.endpoint(), http("/")).outcome == ProbeOutcome::ok);
}

TEST_CASE("without http_host the endpoint is the Host header", "[prober]") {
  asio::io_context io;
  HttpStub server(io, {"HTTP/1.1 200 OK\n\n"});  // bare LF line ends are accepted too
  ProbeOptions options = http("/ready?full=1");
  options.http_host.clear();
  CHECK(run_probe(io, server.endpoint(), options).outcome == ProbeOutcome::ok);
  REQUIRE(server.requests().size() == 1);
  CHECK_THAT(server.requests()[0],
             Catch::StartsWith("GET /ready?full=1 HTTP/1.1\r\nHost: 127.0.0.1:" +
                               std::to_string(server.endpoint().port()) + "\r\n"));
}

TEST_CASE("HTTP 5xx, garbage and early close fail", "[prober]") {
  const std::string response =
      GENERATE(as<std::string>{}, "HTTP/1.1 500 Internal Server Error\r\n\r\n",
               "HTTP/1.1 503 Service Unavailable\r\n\r\n",
               "SSH-2.0-OpenSSH_9.2\r\n",   // not HTTP
               "HTTP/1.1 2000 OK\r\n\r\n",  // malformed status
               "HTTP/1.1 OK\r\n\r\n",
               "HTTP/1.1 200 OK",                                  // closed before the line ended
               "HTTP/1.1 200 " + std::string(2000, 'x') + "\r\n",  // no line end within 1 KiB
               "");                                                // closed without a byte
  INFO(response.substr(0, 40));
  asio::io_context io;
  HttpStub server(io, {response});
  CHECK(run_probe(io, server.endpoint(), http("/")).outcome == ProbeOutcome::failed);
}

TEST_CASE("a connection closed at once fails", "[prober]") {
  asio::io_context io;
  HttpStub server(io, HttpStub::Behaviour::hang_up);
  CHECK(run_probe(io, server.endpoint(), http("/")).outcome == ProbeOutcome::failed);
}

TEST_CASE("an HTTP server that never answers is a timeout, and the socket is closed", "[prober]") {
  asio::io_context io;
  HttpStub server(io, HttpStub::Behaviour::never_answer);
  const auto started = std::chrono::steady_clock::now();
  const ProbeResult result = run_probe(io, server.endpoint(), http("/", 200ms));
  CHECK(result.outcome == ProbeOutcome::timeout);
  CHECK(std::chrono::steady_clock::now() - started < 1s);

  run_until_complete(io, [&]() -> asio::awaitable<void> {
    for (int i = 0; i < 100 && server.closed_by_client() == 0; ++i) co_await sleep_for(10ms);
  }());
  CHECK(server.closed_by_client() == 1);
}

TEST_CASE("invalid options fail without connecting", "[prober]") {
  asio::io_context io;
  AcceptingListener listener(io);
  ProbeOptions no_slash = http("healthz");
  ProbeOptions space = http("/a b");
  ProbeOptions injected_host = http("/");
  injected_host.http_host = "x\r\nX-Evil: 1";
  ProbeOptions zero_timeout = tcp_only(0ms);
  for (const ProbeOptions& options : {no_slash, space, injected_host, zero_timeout}) {
    CHECK(director::net::validate(options));
    CHECK(run_probe(io, listener.endpoint(), options).outcome == ProbeOutcome::failed);
  }
  CHECK_FALSE(director::net::validate(http("/healthz?x=1")));
  CHECK_FALSE(director::net::validate(tcp_only()));
}

TEST_CASE("hanging probes do not hold up a healthy one", "[prober]") {
  asio::io_context io;
  FullListener full(io);
  run_until_complete(io, full.fill());
  HttpStub silent(io, HttpStub::Behaviour::never_answer);
  HttpStub healthy(io, {"HTTP/1.1 200 OK\r\n\r\n"});
  constexpr auto timeout = 500ms;

  std::vector<int> completion_order;
  auto probe_and_record = [&](int id, tcp::endpoint endpoint,
                              ProbeOptions options) -> asio::awaitable<ProbeResult> {
    ProbeResult result = co_await probe(endpoint, std::move(options));
    completion_order.push_back(id);
    co_return result;
  };
  std::vector<asio::awaitable<ProbeResult>> probes;
  for (int i = 0; i < 50; ++i)
    probes.push_back(probe_and_record(i, full.endpoint(), tcp_only(timeout)));
  for (int i = 50; i < 100; ++i)
    probes.push_back(probe_and_record(i, silent.endpoint(), http("/", timeout)));
  probes.push_back(probe_and_record(100, healthy.endpoint(), http("/", timeout)));

  const auto started = std::chrono::steady_clock::now();
  const auto results = run_until_complete(io, gather(std::move(probes)));
  CHECK(std::chrono::steady_clock::now() - started < 5 * timeout);

  CHECK(results.back().outcome == ProbeOutcome::ok);
  CHECK(results.back().latency < timeout);
  REQUIRE(completion_order.size() == 101);
  CHECK(completion_order.front() == 100);
  for (std::size_t i = 0; i < 100; ++i) {
    INFO("hanging probe " << i);
    CHECK(results[i].outcome == ProbeOutcome::timeout);
  }
}
