// The HTTP layer every server of the project uses for its pages (the agent's /metrics and
// operator endpoints; the spawner's pages): Boost.Beast underneath, handlers on top that are
// plain functions of a request returning a response, with no sockets in sight (or coroutines
// that await bounded I/O before they answer: AsyncHandler). Thread-safe.
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
// - An AsyncHandler (Router::get_async) runs inside the exchange deadline: its awaits are the
//   handler's to bound (well below HttpLimits::exchange_timeout, so that its answer can still be
//   written in what is left). One still running HttpLimits::exchange_timeout after it started
//   is cancelled (its pending operation completes with operation_aborted) and the client closed
//   without an answer.
// - Errors the layer answers itself are JSON: {"error": "<message>"}.
//
// Streams (Router::stream, GET only: the spawner's NDJSON event feed): the handler answers a
// StreamResponse, a head and a body coroutine that writes chunks as it pleases.
// - A head with a status other than 200, or without a body coroutine, is an ordinary response
//   (the contract above): that is how a stream handler refuses.
// - Otherwise the head goes out with `Transfer-Encoding: chunked` (no Content-Length),
//   `Connection: close` and `Cache-Control: no-store` (unless the head sets its own), within the
//   exchange deadline. After the head there is no exchange deadline: the body runs as long as it
//   likes, but each StreamWriter::write must finish within HttpLimits::stream_write_timeout, so
//   a client that stops reading is dropped and memory stays bounded (one chunk in flight). A
//   client that goes away is noticed at the next write (a feed's heartbeat bounds that).
// - Once its head is sent a stream no longer counts against max_connections but against
//   HttpLimits::max_streams: a stream request beyond that cap is answered 503 ("too many
//   streams") before its handler runs.
// - When the body returns while the client is still there, the server ends the chunked body
//   (the last chunk) and closes as after any response. A body that throws is logged
//   (`HTTP stream failed`) and the connection closed.
// - HttpServer::stop() ends every stream promptly: the body's pending operation is cancelled
//   (it throws, or completes with operation_aborted under nothrow_awaitable) and write() returns
//   false from then on; the connection is closed without the last chunk, so the client sees a
//   truncated body. A body must therefore return once write() returns false or an await of
//   its is cancelled.
#pragma once

#include "net/listener.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/verb.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace director::net::http {

using Status = boost::beast::http::status;
using Method = boost::beast::http::verb;
using Request = boost::beast::http::request<boost::beast::http::string_body>;
using Response = boost::beast::http::response<boost::beast::http::string_body>;
// Runs on the connection's strand; concurrent calls for concurrent requests are possible. An
// exception it throws is answered 500 (and logged).
using Handler = std::function<Response(const Request&)>;

// A handler that awaits I/O before it answers (the agent's /connections reads HAProxy's runtime
// API). Runs on the connection's strand, like a Handler; it bounds what it awaits, and is
// cancelled past the exchange deadline (see the contract above). An exception it throws is
// answered 500 (and logged).
using AsyncHandler = std::function<boost::asio::awaitable<Response>(const Request&)>;

inline constexpr std::string_view json_type = "application/json";

// The body side of a stream, handed to the body coroutine; used on the connection's strand only
// (the body coroutine runs there).
class StreamWriter {
 public:
  StreamWriter(const StreamWriter&) = delete;
  StreamWriter& operator=(const StreamWriter&) = delete;

  // Sends `data` as one chunk. true: sent. false: the client is gone, it did not take the chunk
  // within HttpLimits::stream_write_timeout, or the server stopped; from then on every write
  // returns false at once and the body should return. Empty data sends nothing (an empty chunk
  // would end the body). One write at a time.
  boost::asio::awaitable<bool> write(std::string data);

  // false once a write failed or the server stopped.
  bool open() const { return open_ && !*stopped_; }

 private:
  friend class HttpServer;
  StreamWriter(boost::asio::ip::tcp::socket& socket, std::chrono::milliseconds write_timeout,
               std::shared_ptr<const bool> stopped)
      : socket_(socket), write_timeout_(write_timeout), stopped_(std::move(stopped)) {}

  boost::asio::ip::tcp::socket& socket_;
  std::chrono::milliseconds write_timeout_;
  std::shared_ptr<const bool> stopped_;  // set on the strand by HttpServer::stop()
  bool open_ = true;
};

// What a stream handler answers: the head (status 200 to stream; see the contract above) and
// the coroutine that writes the body. The server keeps the StreamResponse alive until the body
// returns, so the body may refer to what its function object captured.
struct StreamResponse {
  Response head;
  std::function<boost::asio::awaitable<void>(StreamWriter&)> body;
};
// Runs on the connection's strand, like a Handler; an exception it throws is answered 500.
using StreamHandler = std::function<StreamResponse(const Request&)>;

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
  // GET requests for exactly `path` go to the coroutine `handler`.
  Router& get_async(std::string path, AsyncHandler handler);
  // GET requests for exactly `path` are answered by a stream (the contract above).
  Router& stream(std::string path, StreamHandler handler);
  // Requests for any path no route names, whatever their method, go to `handler` instead of 404
  // (the spawner's pages answer on every path of the user's origin).
  Router& fallback(Handler handler);

  // The handler's response; 404 for an unknown path, 405 with `Allow` for a method the path has
  // no handler for, 400 for a target that is not a path. For a stream route: the head its
  // handler answers (its body is not run), e.g. for tests of a stream's head. For an
  // AsyncHandler route: its response, the handler run to completion on an io_context of this
  // call's own (it blocks: for tests, never on a server's thread).
  Response route(const Request& request) const;

  // What `request` goes to: the response route() gives for anything but a stream or async route,
  // or that route's handler (not yet called).
  std::variant<Response, const StreamHandler*, const AsyncHandler*> select(const Request& request) const;

 private:
  struct Route {
    Method method;
    std::string path;
    Handler handler;               // set for ordinary routes
    StreamHandler stream_handler;  // set for stream routes
    AsyncHandler async_handler;    // set for async routes
  };
  std::vector<Route> routes_;
  Handler fallback_;  // empty: 404
};

struct HttpLimits {
  std::size_t header_limit = 8192;                   // request line + headers + the empty line
  std::size_t body_limit = 64 * 1024;                // request body
  std::chrono::milliseconds exchange_timeout{5000};  // to read the request and write the response
  std::size_t max_connections = 32;                  // concurrent exchanges; beyond: 503 and close
  std::size_t max_streams = 16;                      // concurrent streams; beyond: 503
  std::chrono::milliseconds stream_write_timeout{10000};  // for each chunk a stream writes
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
  // Stops accepting; exchanges in progress finish within their deadline, streams end at once
  // (see above). Safe from any thread.
  void stop();

  boost::asio::ip::tcp::endpoint local_endpoint() const;

 private:
  // What every exchange needs; shared with the exchange coroutines, which may outlive the
  // server when the io_context is stopped with exchanges suspended.
  // A stream's stop signal, touched on its connection's strand only.
  struct StreamStop {
    explicit StreamStop(const boost::asio::any_io_executor& executor) : timer(executor) {}
    boost::asio::steady_timer timer;  // never expires until stop(); the stream waits on it
    std::shared_ptr<bool> stopped = std::make_shared<bool>(false);
  };
  struct Shared {
    Shared(Router routes, HttpLimits bounds) : router(std::move(routes)), limits(bounds) {}
    Router router;
    HttpLimits limits;
    std::atomic<std::size_t> active{0};    // exchanges in progress
    std::atomic<std::size_t> refusing{0};  // connections being answered 503 beyond the cap
    std::atomic<std::size_t> streams{0};   // streams in progress (reserved before the handler runs)
    std::mutex mutex;                      // guards stopping and stops
    bool stopping = false;
    std::list<std::weak_ptr<StreamStop>> stops;  // of the streams in progress
  };

  void accept(boost::asio::ip::tcp::socket socket);
  // Reads one request and answers it; or, when `refuse`, answers 503 without reading.
  static boost::asio::awaitable<void> exchange(boost::asio::ip::tcp::socket socket, std::shared_ptr<Shared> shared,
                                               bool refuse);
  // Answers `request` with the stream `handler` gives (the exchange's stream slot is reserved);
  // calls `head_sent` once the head is out (the exchange no longer counts as one).
  static boost::asio::awaitable<void> answer_stream(boost::beast::tcp_stream& stream, const Request& request,
                                                    const StreamHandler& handler, std::shared_ptr<Shared> shared,
                                                    std::function<void()> head_sent);

  Listener listener_;
  std::shared_ptr<Shared> shared_;
};

}  // namespace director::net::http
