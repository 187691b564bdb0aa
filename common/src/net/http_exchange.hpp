// The HTTP exchange of http_client.hpp, one implementation for every transport it speaks
// (http_client.cpp: TCP and unix sockets; tls_client.cpp: TLS over TCP): writing the request,
// reading the response within its limits and deadline, and naming what failed. Not part of the
// client's interface: include http_client.hpp or tls_client.hpp instead.
//
// Contract: `Stream` is a Beast stream whose lowest layer is a beast::basic_stream (it carries the
// deadline: the caller sets it before the exchange; stream_exchange() lifts it for an accepted
// stream). `where` names the endpoint in every error message.
#pragma once

#include "net/awaitable.hpp"
#include "net/http_client.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

namespace director::net::http::detail {

using Deadline = std::chrono::steady_clock::time_point;

// The response head: status line and headers, with the empty line.
constexpr std::uint32_t head_limit = 16 * 1024;
// How much of a streamed body one read hands to on_data at most.
constexpr std::size_t stream_piece = 16 * 1024;

inline ClientError failure(ClientErrorKind kind, std::string message) { return ClientError{kind, std::move(message)}; }

// Classifies a failed step of the exchange with `where` (the endpoint) in the message.
ClientError step_failure(std::string_view step, const std::string& where, const boost::system::error_code& error,
                         const ClientLimits& limits);

// A request as sent: the caller's, with Host (default "localhost"), Connection: close and a
// body length.
void complete(ClientRequest& request);

// Beast's streams and headers construct from anything, so a result of one names its alternative.
template <typename Value>
ClientResult<Value> failed(ClientError error) {
  return ClientResult<Value>(boost::system::in_place_error, std::move(error));
}

// Resolves and connects to `endpoint` by `deadline`; the stream keeps the deadline.
boost::asio::awaitable<ClientResult<boost::beast::tcp_stream>> connect(const TcpEndpoint& endpoint, Deadline deadline,
                                                                       const ClientLimits& limits,
                                                                       const std::string& where);

template <typename Stream>
boost::asio::awaitable<ClientResult<ClientResponse>> exchange(Stream& stream, ClientRequest& request,
                                                              const ClientLimits& limits, const std::string& where) {
  namespace bhttp = boost::beast::http;
  auto [write_error, written] = co_await bhttp::async_write(stream, request, nothrow_awaitable);
  if (write_error) co_return failed<ClientResponse>(step_failure("cannot send the request to", where, write_error, limits));
  boost::beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.header_limit(head_limit);
  parser.body_limit(limits.body_limit);
  if (request.method() == bhttp::verb::head) parser.skip(true);
  auto [read_error, read] = co_await bhttp::async_read(stream, buffer, parser, nothrow_awaitable);
  if (read_error) co_return failed<ClientResponse>(step_failure("no valid answer from", where, read_error, limits));
  co_return parser.release();
}

template <typename Stream>
boost::asio::awaitable<ClientResult<StreamHead>> stream_exchange(
    Stream& stream, ClientRequest& request, const std::function<void(const StreamHead&)>& on_head,
    const OnData& on_data, const ClientLimits& limits, const std::string& where) {
  namespace bhttp = boost::beast::http;
  auto [write_error, written] = co_await bhttp::async_write(stream, request, nothrow_awaitable);
  if (write_error) co_return failed<StreamHead>(step_failure("cannot send the request to", where, write_error, limits));
  boost::beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::buffer_body> parser;
  parser.header_limit(head_limit);
  parser.body_limit(boost::none);  // endless by design; a refusal's body is bounded below
  auto [head_error, head_read] = co_await bhttp::async_read_header(stream, buffer, parser, nothrow_awaitable);
  if (head_error) co_return failed<StreamHead>(step_failure("no valid answer from", where, head_error, limits));
  StreamHead head = parser.get().base();
  const bool accepted = head.result_int() / 100 == 2;
  // An accepted stream has no deadline; a refusal's body is read within a fresh one.
  auto& deadline_layer = boost::beast::get_lowest_layer(stream);
  if (accepted) {
    deadline_layer.expires_never();
  } else {
    deadline_layer.expires_after(limits.timeout);
  }
  if (on_head) on_head(head);

  std::array<char, stream_piece> piece{};
  std::size_t refusal_bytes = 0;
  while (!parser.is_done()) {
    parser.get().body().data = piece.data();
    parser.get().body().size = piece.size();
    // read_some: hands over what arrived, where read would wait for the piece to fill up.
    auto [read_error, read] = co_await bhttp::async_read_some(stream, buffer, parser, nothrow_awaitable);
    if (read_error == bhttp::error::need_buffer) read_error = {};
    const std::size_t got = piece.size() - parser.get().body().size;
    if (got > 0) {
      if (!accepted) {
        refusal_bytes += got;
        if (refusal_bytes > limits.body_limit) {
          co_return failed<StreamHead>(step_failure("", where, bhttp::error::body_limit, limits));
        }
      }
      if (!on_data(std::string_view(piece.data(), got))) co_return head;
    }
    if (read_error) co_return failed<StreamHead>(step_failure("the stream broke from", where, read_error, limits));
  }
  co_return head;
}

}  // namespace director::net::http::detail
