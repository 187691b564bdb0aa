// The HTTP client every part of the project uses (the spawner's runtime client over Docker's
// unix socket or TCP, its readers of the agents' /users, the agent's --health): Boost.Beast
// underneath, one request per connection, every read bounded.
//
// Contract:
// - One connection per request (`Connection: close`); HTTP/1.1; the caller's Host header is
//   kept, else "localhost" (Docker's unix socket wants one).
// - request(): the whole exchange (connect, write, read head and body) within `timeout`; the
//   response head at most 16 KiB and the body at most `body_limit` bytes, else an error.
// - stream(): for endless responses (Docker's /events): the head within `timeout`, then each
//   chunk of body as it arrives, handed to `on_data`, without a deadline, until the server
//   closes, `on_data` returns false, or the awaiting coroutine is cancelled. Chunked encoding is
//   undone; the caller splits lines.
// - TCP (HTTPS too): keepalive probes after ClientLimits::keepalive_idle without traffic, so that
//   a connection whose peer vanished without a FIN or RST (a host gone, a NAT or load balancer
//   that dropped it) fails (protocol: "Connection timed out") rather than waiting for ever: an
//   idle stream (Docker's /events is silent while nothing happens) ends within
//   idle + interval x probes, and the probes keep such middleboxes' mapping alive meanwhile.
// - Failures are values: ClientError says what failed (connect, timeout, protocol, too large).
// - HTTPS: tls_client.hpp (its own library, director_net_tls: the one that links OpenSSL) adds
//   request() and stream() for a TlsEndpoint, with this contract.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <variant>

namespace director::net::http {

using ClientRequest = boost::beast::http::request<boost::beast::http::string_body>;
using ClientResponse = boost::beast::http::response<boost::beast::http::string_body>;

// Where to connect: a unix-domain socket path, or a host (name or address) and port.
struct UnixEndpoint { std::string path; };
struct TcpEndpoint { std::string host; std::uint16_t port = 0; };
using ClientEndpoint = std::variant<UnixEndpoint, TcpEndpoint>;
std::string to_string(const ClientEndpoint& endpoint);  // "unix:///path" or "host:port"

enum class ClientErrorKind : std::uint8_t {
  connect,    // no connection (refused, no such socket, name not resolved)
  timeout,    // the deadline passed
  protocol,   // not HTTP, or the connection broke mid-message
  too_large,  // head or body beyond its limit
  tls,        // the TLS handshake failed or the server's certificate is not trusted (tls_client.hpp)
};

struct ClientError {
  ClientErrorKind kind = ClientErrorKind::connect;
  // For logs and pages: "<what failed> <endpoint>: <the system's reason>", e.g. "cannot connect
  // to unix:///run/docker.sock: No such file or directory".
  std::string message;
};
[[noreturn]] void throw_exception_from_error(const ClientError& error, const boost::source_location& location);

template <typename T>
using ClientResult = boost::system::result<T, ClientError>;

struct ClientLimits {
  std::chrono::milliseconds timeout{10'000};
  std::size_t body_limit = 8 * 1024 * 1024;
  // TCP keepalive: the first probe after this long without traffic, then one every
  // keepalive_interval; keepalive_probes unanswered fail the connection (70 s by default).
  std::chrono::seconds keepalive_idle{40};
  std::chrono::seconds keepalive_interval{10};
  int keepalive_probes = 3;
};

boost::asio::awaitable<ClientResult<ClientResponse>> request(ClientEndpoint endpoint, ClientRequest request,
                                                             ClientLimits limits = {});

// The response head of a stream() (status and headers; the body went to on_data).
using StreamHead = boost::beast::http::response_header<>;
// Receives each piece of body; false stops the stream (the call then returns the head).
using OnData = std::function<bool(std::string_view data)>;
// Runs `on_head` with the head first (a non-2xx head ends the stream after its body, which is
// read up to body_limit and handed to on_data too). Ends when the server closes the stream.
boost::asio::awaitable<ClientResult<StreamHead>> stream(ClientEndpoint endpoint, ClientRequest request,
                                                        std::function<void(const StreamHead&)> on_head,
                                                        OnData on_data, ClientLimits limits = {});

}  // namespace director::net::http
