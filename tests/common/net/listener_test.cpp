// The one listener (common/src/net/listener.hpp) over real loopback sockets: what it hands over,
// the error naming the address, stop, and accepting again after running out of descriptors.
#include "net/listener.hpp"

#include "net/awaitable.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <optional>
#include <vector>

#include "../../server/asio_test_support.hpp"

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;
using director::net::Listener;
using director::net::nothrow_awaitable;
using director::test::run_until_complete;

namespace {

const tcp::endpoint any_loopback_port(asio::ip::address_v4::loopback(), 0);

asio::awaitable<void> sleep_for(std::chrono::steady_clock::duration duration) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  co_await timer.async_wait(nothrow_awaitable);
}

// Waits (at most `limit`) until `done()` holds.
template <typename Condition>
asio::awaitable<bool> eventually(Condition done, std::chrono::milliseconds limit = 2000ms) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) co_return false;
    co_await sleep_for(5ms);
  }
  co_return true;
}

}  // namespace

TEST_CASE("listener: each connection is handed over, connected to its peer", "[listener]") {
  asio::io_context io;
  Listener listener(io, any_loopback_port, "test");
  std::vector<tcp::socket> accepted;
  listener.start([&](tcp::socket socket) { accepted.push_back(std::move(socket)); });
  const auto ok = run_until_complete(io, [&]() -> asio::awaitable<bool> {
    tcp::socket first(io);
    tcp::socket second(io);
    co_await first.async_connect(listener.local_endpoint(), asio::use_awaitable);
    co_await second.async_connect(listener.local_endpoint(), asio::use_awaitable);
    co_return co_await eventually([&] { return accepted.size() == 2; });
  }());
  REQUIRE(ok);
  for (const auto& socket : accepted) CHECK(socket.remote_endpoint().address().is_loopback());
}

TEST_CASE("listener: an address it cannot bind is an error naming it", "[listener]") {
  asio::io_context io;
  Listener taken(io, any_loopback_port, "");
  const auto address = "127.0.0.1:" + std::to_string(taken.local_endpoint().port());
  CHECK_THROWS_WITH(Listener(io, taken.local_endpoint(), ""),
                    Catch::StartsWith("cannot listen on " + address + ": ") && Catch::Contains("in use"));
  CHECK_THROWS_WITH(Listener(io, taken.local_endpoint(), "HTTP"),
                    Catch::StartsWith("cannot listen for HTTP on " + address + ": "));
}

TEST_CASE("listener: after stop, connections are refused", "[listener]") {
  asio::io_context io;
  Listener listener(io, any_loopback_port, "test");
  const auto endpoint = listener.local_endpoint();
  int accepted = 0;
  listener.start([&](tcp::socket) { ++accepted; });
  listener.stop();
  listener.stop();  // twice is harmless
  const auto error = run_until_complete(io, [&]() -> asio::awaitable<boost::system::error_code> {
    co_await sleep_for(20ms);
    tcp::socket socket(io);
    const auto [connect_error] = co_await socket.async_connect(endpoint, nothrow_awaitable);
    co_return connect_error;
  }());
  CHECK(error == asio::error::connection_refused);
  CHECK(accepted == 0);
  CHECK(listener.local_endpoint() == endpoint);  // still answers after the close
}

TEST_CASE("listener: out of descriptors, it pauses and accepts again once one is free", "[listener][emfile]") {
  asio::io_context io;
  Listener listener(io, any_loopback_port, "test");
  std::vector<tcp::socket> accepted;
  listener.start([&](tcp::socket socket) { accepted.push_back(std::move(socket)); });
  // The clients' sockets exist before descriptors run out; then every free descriptor below a
  // lowered limit is taken but one, for the first accept.
  tcp::socket first(io, tcp::v4());
  tcp::socket second(io, tcp::v4());
  rlimit original{};
  REQUIRE(getrlimit(RLIMIT_NOFILE, &original) == 0);
  const int probe = ::open("/dev/null", O_RDONLY);
  REQUIRE(probe >= 0);
  rlimit lowered = original;
  lowered.rlim_cur = static_cast<rlim_t>(probe + 64);
  REQUIRE(setrlimit(RLIMIT_NOFILE, &lowered) == 0);
  std::vector<int> fillers{probe};
  for (;;) {
    const int fd = ::dup(probe);
    if (fd < 0) break;
    fillers.push_back(fd);
  }
  const int dup_error = errno;
  ::close(fillers.back());
  fillers.pop_back();
  struct Restore {
    std::vector<int>& fillers;
    rlimit original;
    ~Restore() {
      for (const int fd : fillers) ::close(fd);
      setrlimit(RLIMIT_NOFILE, &original);
    }
  } restore{fillers, original};
  REQUIRE(dup_error == EMFILE);

  struct Outcome {
    bool first_accepted = false;
    bool second_waited = false;  // not accepted while every descriptor was taken
    bool second_accepted = false;
  };
  const auto outcome = run_until_complete(io, [&]() -> asio::awaitable<Outcome> {
    Outcome result;
    co_await first.async_connect(listener.local_endpoint(), asio::use_awaitable);
    co_await second.async_connect(listener.local_endpoint(), asio::use_awaitable);  // in the backlog
    result.first_accepted = co_await eventually([&] { return accepted.size() == 1; });
    co_await sleep_for(200ms);  // several failed accepts, each followed by a pause
    result.second_waited = accepted.size() == 1;
    accepted.front().close();  // a descriptor is free again
    result.second_accepted = co_await eventually([&] { return accepted.size() == 2; });
    co_return result;
  }());
  CHECK(outcome.first_accepted);
  CHECK(outcome.second_waited);
  CHECK(outcome.second_accepted);
}
