#include "net/http_client.hpp"

#include "net/awaitable.hpp"
#include "net/http_exchange.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <stdexcept>
#include <utility>

namespace director::net::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using boost::system::error_code;

}  // namespace

namespace detail {

ClientError step_failure(std::string_view step, const std::string& where, const error_code& error,
                         const ClientLimits& limits) {
  if (error == beast::error::timeout) {
    return failure(ClientErrorKind::timeout,
                   "no answer from " + where + " within " + std::to_string(limits.timeout.count()) + " ms");
  }
  if (error == bhttp::error::header_limit) {
    return failure(ClientErrorKind::too_large, "the response head from " + where + " is larger than " +
                                                   std::to_string(head_limit) + " bytes");
  }
  if (error == bhttp::error::body_limit) {
    return failure(ClientErrorKind::too_large, "the response body from " + where + " is larger than " +
                                                   std::to_string(limits.body_limit) + " bytes");
  }
  return failure(ClientErrorKind::protocol, std::string(step) + " " + where + ": " + error.message());
}

void complete(ClientRequest& request) {
  if (request.find(bhttp::field::host) == request.end()) request.set(bhttp::field::host, "localhost");
  request.set(bhttp::field::connection, "close");
  if (request.find(bhttp::field::content_length) == request.end() &&
      request.find(bhttp::field::transfer_encoding) == request.end()) {
    const auto method = request.method();
    if (!request.body().empty() || method == bhttp::verb::post || method == bhttp::verb::put ||
        method == bhttp::verb::patch) {
      request.content_length(request.body().size());
    }
  }
}

asio::awaitable<ClientResult<beast::tcp_stream>> connect(const TcpEndpoint& endpoint, Deadline deadline,
                                                         const ClientLimits& limits, const std::string& where) {
  using TcpStream = beast::tcp_stream;
  const auto executor = co_await asio::this_coro::executor;
  // The resolver has no deadline of its own: a timer cancels it.
  asio::ip::tcp::resolver resolver(executor);
  asio::steady_timer timer(executor, deadline);
  bool timed_out = false;
  timer.async_wait([&resolver, &timed_out](const error_code& error) {
    if (error) return;  // cancelled: the resolver finished first (and may be gone)
    timed_out = true;
    resolver.cancel();
  });
  auto [resolve_error, results] =
      co_await resolver.async_resolve(endpoint.host, std::to_string(endpoint.port), nothrow_awaitable);
  timer.cancel();
  if (timed_out) co_return failed<TcpStream>(step_failure("", where, beast::error::timeout, limits));
  if (resolve_error) {
    co_return failed<TcpStream>(failure(
        ClientErrorKind::connect, "cannot resolve " + endpoint.host + " for " + where + ": " + resolve_error.message()));
  }
  TcpStream stream(executor);
  stream.expires_at(deadline);
  auto [connect_error, connected] = co_await stream.async_connect(results, nothrow_awaitable);
  if (connect_error == beast::error::timeout) {
    co_return failed<TcpStream>(step_failure("", where, connect_error, limits));
  }
  if (connect_error) {
    co_return failed<TcpStream>(
        failure(ClientErrorKind::connect, "cannot connect to " + where + ": " + connect_error.message()));
  }
  // Keepalive (the contract in http_client.hpp). Linux accepts these on any connected TCP
  // socket; should one be refused, the connection still works, only without the probes.
  auto& socket = stream.socket();
  error_code ignored;
  socket.set_option(asio::socket_base::keep_alive(true), ignored);
  socket.set_option(asio::detail::socket_option::integer<IPPROTO_TCP, TCP_KEEPIDLE>(
                        static_cast<int>(limits.keepalive_idle.count())), ignored);
  socket.set_option(asio::detail::socket_option::integer<IPPROTO_TCP, TCP_KEEPINTVL>(
                        static_cast<int>(limits.keepalive_interval.count())), ignored);
  socket.set_option(asio::detail::socket_option::integer<IPPROTO_TCP, TCP_KEEPCNT>(limits.keepalive_probes), ignored);
  co_return ClientResult<TcpStream>(boost::system::in_place_value, std::move(stream));
}

}  // namespace detail

namespace {

using namespace detail;
using UnixStream = beast::basic_stream<asio::local::stream_protocol>;

asio::awaitable<ClientResult<UnixStream>> connect(const UnixEndpoint& endpoint, Deadline deadline,
                                                  const ClientLimits& limits) {
  UnixStream stream(co_await asio::this_coro::executor);
  stream.expires_at(deadline);
  auto [error] = co_await stream.async_connect(asio::local::stream_protocol::endpoint(endpoint.path), nothrow_awaitable);
  if (error == beast::error::timeout) co_return failed<UnixStream>(step_failure("", to_string(endpoint), error, limits));
  if (error) {
    co_return failed<UnixStream>(
        failure(ClientErrorKind::connect, "cannot connect to " + to_string(endpoint) + ": " + error.message()));
  }
  co_return ClientResult<UnixStream>(boost::system::in_place_value, std::move(stream));
}

// Connects to `endpoint` within the deadline and runs `work(stream)` on the connection.
template <typename Value, typename Work>
asio::awaitable<ClientResult<Value>> with_connection(const ClientEndpoint& endpoint, const ClientLimits& limits,
                                                     Work work) {
  const Deadline deadline = std::chrono::steady_clock::now() + limits.timeout;
  if (const auto* unix_endpoint = std::get_if<UnixEndpoint>(&endpoint)) {
    auto stream = co_await connect(*unix_endpoint, deadline, limits);
    if (!stream) co_return failed<Value>(stream.error());
    co_return co_await work(*stream);
  }
  auto stream = co_await detail::connect(std::get<TcpEndpoint>(endpoint), deadline, limits, to_string(endpoint));
  if (!stream) co_return failed<Value>(stream.error());
  co_return co_await work(*stream);
}

}  // namespace

std::string to_string(const ClientEndpoint& endpoint) {
  if (const auto* unix_endpoint = std::get_if<UnixEndpoint>(&endpoint)) return "unix://" + unix_endpoint->path;
  const auto& tcp = std::get<TcpEndpoint>(endpoint);
  const bool v6 = tcp.host.find(':') != std::string::npos;
  return (v6 ? "[" + tcp.host + "]" : tcp.host) + ":" + std::to_string(tcp.port);
}

void throw_exception_from_error(const ClientError& error, const boost::source_location&) {
  throw std::runtime_error(error.message);
}

asio::awaitable<ClientResult<ClientResponse>> request(ClientEndpoint endpoint, ClientRequest request,
                                                      ClientLimits limits) {
  complete(request);
  const std::string where = to_string(endpoint);
  co_return co_await with_connection<ClientResponse>(
      endpoint, limits, [&](auto& stream) { return exchange(stream, request, limits, where); });
}

asio::awaitable<ClientResult<StreamHead>> stream(ClientEndpoint endpoint, ClientRequest request,
                                                 std::function<void(const StreamHead&)> on_head, OnData on_data,
                                                 ClientLimits limits) {
  complete(request);
  const std::string where = to_string(endpoint);
  co_return co_await with_connection<StreamHead>(endpoint, limits, [&](auto& stream) {
    return stream_exchange(stream, request, on_head, on_data, limits, where);
  });
}

}  // namespace director::net::http
