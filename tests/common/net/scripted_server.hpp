// One-connection servers with a script, for the HTTP client's tests (http_client_test.cpp over
// TCP and unix sockets, tls_client_test.cpp over TLS): the server reads the request head, writes
// scripted raw bytes (pieces with pauses between them) and closes, or holds the connection open.
// Raw bytes, so that the tests pin what the client does with chunked bodies, slow or silent
// servers, oversized heads and bodies, and endless streams.
#pragma once

#include "net/awaitable.hpp"
#include "net/http_client.hpp"
#include "../../server/asio_test_support.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace director::test {

// One piece of the server's answer, written after `pause`.
struct Piece {
  std::string bytes;
  std::chrono::milliseconds pause{0};
};

// What the server does, and what it saw: it reads the request head, writes `pieces` and then
// closes, or keeps the connection open (silent) when `hold_open`.
struct Script {
  std::vector<Piece> pieces;
  bool hold_open = false;
  std::string request_head;  // what the client sent, up to the empty line
  std::string server_name;   // over TLS: the name the client sent (SNI)
};

inline std::shared_ptr<Script> answering(std::vector<Piece> pieces, bool hold_open = false) {
  auto script = std::make_shared<Script>();
  script->pieces = std::move(pieces);
  script->hold_open = hold_open;
  return script;
}

// Keeps a connection open (and silent) for longer than any test runs.
inline boost::asio::awaitable<void> hold_open(const boost::asio::any_io_executor& executor) {
  boost::asio::steady_timer timer(executor, std::chrono::hours(1));
  co_await timer.async_wait(net::nothrow_awaitable);
}

// Plays `script` on a connected stream (a socket, or a TLS stream after its handshake).
template <typename Stream>
boost::asio::awaitable<void> play(Stream& stream, Script& script) {
  std::string received;
  auto [read_error, read] = co_await boost::asio::async_read_until(
      stream, boost::asio::dynamic_buffer(received, 65536), "\r\n\r\n", net::nothrow_awaitable);
  if (read_error && received.empty()) co_return;
  script.request_head = received.substr(0, received.find("\r\n\r\n"));
  boost::asio::steady_timer timer(stream.get_executor());
  for (const auto& piece : script.pieces) {
    timer.expires_after(piece.pause);
    co_await timer.async_wait(net::nothrow_awaitable);
    auto [write_error, written] =
        co_await boost::asio::async_write(stream, boost::asio::buffer(piece.bytes), net::nothrow_awaitable);
    if (write_error) co_return;
  }
  if (script.hold_open) co_await hold_open(stream.get_executor());
}

inline net::http::ClientRequest get(std::string target) {
  return net::http::ClientRequest(boost::beast::http::verb::get, target, 11);
}

// An on_data that appends every piece to `received` and goes on.
inline net::http::OnData collect_into(std::string& received) {
  return [&received](std::string_view data) {
    received += data;
    return true;
  };
}

// Runs `task` on `io` and cancels it after `after`, as the loser of `task || timer` (how a
// caller stops a stream). Returns what `task` returned then, or nothing if it never returned.
template <typename T>
std::optional<T> cancelled_after(boost::asio::io_context& io, boost::asio::awaitable<T> task,
                                 std::chrono::milliseconds after) {
  using namespace boost::asio::experimental::awaitable_operators;
  std::optional<T> ended;
  auto watch = [&]() -> boost::asio::awaitable<void> { ended = co_await std::move(task); };
  auto later = [&]() -> boost::asio::awaitable<void> {
    boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, after);
    co_await timer.async_wait(net::nothrow_awaitable);
  };
  run_until_complete(io, [&]() -> boost::asio::awaitable<void> { co_await (watch() || later()); }());
  return ended;
}

}  // namespace director::test
