// The HTTP layer every server of the project uses for its pages (the agent's /metrics and
// operator endpoints; the spawner's pages): Boost.Beast underneath, handlers on top that are
// plain functions of a request returning a response, with no sockets in sight. Thread-safe.
//
// The contract, the same for every handler:
// - HTTP/1.0 and HTTP/1.1, one request per connection: every response carries
//   `Connection: close`, `Content-Length` and `Cache-Control: no-store`, and after it the server
//   shuts its side down and reads (and drops) what the client still sends for up to 1 s (at
//   most exchange_timeout) and 64 KiB before it closes, so that the close does not reset the
//   connection under the answer.
// - The request head (request line, headers, the empty line) is at most
//   HttpLimits::header_limit bytes: beyond it 414 when the request line did not end within the
//   limit, else 431. A body is at most HttpLimits::body_limit bytes (beyond: 413).
// - One deadline for the whole exchange (HttpLimits::exchange_timeout, reading the request and
//   writing the response): a client too slow for it is closed without an answer.
// - At most HttpLimits::max_connections exchanges at once; a connection beyond that is answered
//   503 without reading its request (and closed at once beyond twice that).
// - Malformed requests (Beast's parser refuses them), a version other than 1.0 or 1.1, and a
//   request target that is not a path (origin form: it starts with '/') are 400.
// - The Router: an unknown path is 404 (or goes to the fallback handler, when one is set); a
//   known path asked with a method it has no handler for is 405 with `Allow` listing the methods
//   it has.
// - A handler that throws is answered 500, and the exception is logged (`HTTP handler failed`).
// - Errors the layer answers itself are JSON: {"error": "<message>"}.
#pragma once

#include "net/listener.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/verb.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace director::net::http {

using Status = boost::beast::http::status;
using Method = boost::beast::http::verb;
using Request = boost::beast::http::request<boost::beast::http::string_body>;
using Response = boost::beast::http::response<boost::beast::http::string_body>;
// Runs on the connection's strand; concurrent calls for concurrent requests are possible. An
// exception it throws is answered 500 (and logged).
using Handler = std::function<Response(const Request&)>;

inline constexpr std::string_view json_type = "application/json";

// A response with `status`, `Content-Type: content_type` and `body`; the server adds the
// headers every response carries (see above).
Response make_response(Status status, std::string_view content_type, std::string body);
// {"error": "<message>"} with `status`.
Response error_response(Status status, std::string_view message);

// A request target split at the first '?': the path and the query (without the '?').
struct Target {
  std::string_view path;
  std::string_view query;
};
Target split_target(std::string_view target);

class Router {
 public:
  // Requests for exactly `path` (the query aside) with `method` go to `handler`.
  Router& add(Method method, std::string path, Handler handler);
  Router& get(std::string path, Handler handler) { return add(Method::get, std::move(path), std::move(handler)); }
  // Requests for any path no route names, whatever their method, go to `handler` instead of 404
  // (the spawner's pages answer on every path of the user's origin).
  Router& fallback(Handler handler);

  // The handler's response; 404 for an unknown path, 405 with `Allow` for a method the path has
  // no handler for, 400 for a target that is not a path.
  Response route(const Request& request) const;

 private:
  struct Route {
    Method method;
    std::string path;
    Handler handler;
  };
  std::vector<Route> routes_;
  Handler fallback_;  // empty: 404
};

struct HttpLimits {
  std::size_t header_limit = 8192;                   // request line + headers + the empty line
  std::size_t body_limit = 64 * 1024;                // request body
  std::chrono::milliseconds exchange_timeout{5000};  // to read the request and write the response
  std::size_t max_connections = 32;                  // concurrent exchanges; beyond: 503 and close
};

class HttpServer {
 public:
  // Binds and listens at once; throws std::runtime_error "cannot listen for <what> on
  // <address>: <reason>" when it cannot (net::Listener).
  HttpServer(boost::asio::io_context& context, const boost::asio::ip::tcp::endpoint& endpoint, std::string what,
             Router router, HttpLimits limits = {});
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  ~HttpServer();

  void start();
  // Stops accepting; exchanges in progress finish within their deadline. Safe from any thread.
  void stop();

  boost::asio::ip::tcp::endpoint local_endpoint() const;

 private:
  // What every exchange needs; shared with the exchange coroutines, which may outlive the
  // server when the io_context is stopped with exchanges suspended.
  struct Shared {
    Router router;
    HttpLimits limits;
    std::atomic<std::size_t> active{0};    // exchanges in progress
    std::atomic<std::size_t> refusing{0};  // connections being answered 503 beyond the cap
  };

  void accept(boost::asio::ip::tcp::socket socket);
  // Reads one request and answers it; or, when `refuse`, answers 503 without reading.
  static boost::asio::awaitable<void> exchange(boost::asio::ip::tcp::socket socket, std::shared_ptr<Shared> shared,
                                               bool refuse);

  Listener listener_;
  std::shared_ptr<Shared> shared_;
};

}  // namespace director::net::http
