#include "net/http_server.hpp"

#include "log/log.hpp"
#include "net/awaitable.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/chunk_encode.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <exception>
#include <optional>
#include <tuple>
#include <utility>

namespace director::net::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
using asio::ip::tcp;

namespace {

// After the response: how long, and how many bytes, to read what the client still sends (so
// that closing does not reset the connection before the client read the response).
constexpr auto linger_time = std::chrono::seconds(1);
constexpr std::size_t linger_bytes = 64 * 1024;

// The headers every response carries (the contract in http_server.hpp).
void add_common_headers(Response& response) {
  response.keep_alive(false);
  if (response.find(beast::http::field::cache_control) == response.end()) {
    response.set(beast::http::field::cache_control, "no-store");
  }
  response.prepare_payload();
}

// The answer to a request head over the limit: 414 when its request line did not end within
// the limit, else 431.
Response head_too_large(bool request_line_ended) {
  if (!request_line_ended) return error_response(Status::uri_too_long, "request line too long");
  return error_response(Status::request_header_fields_too_large, "request headers too large");
}

// The answer to a request the parser refused, or std::nullopt when the client is to be closed
// without one (it went away, or was too slow).
std::optional<Response> answer_read_error(const boost::system::error_code& error, bool request_line_ended) {
  if (error == beast::http::error::header_limit) return head_too_large(request_line_ended);
  if (error == beast::http::error::body_limit) {
    return error_response(Status::payload_too_large, "request body too large");
  }
  if (error == beast::http::error::end_of_stream || error == beast::http::error::partial_message) {
    return std::nullopt;
  }
  if (error.category() == make_error_code(beast::http::error::bad_target).category()) {
    return error_response(Status::bad_request, "malformed request");  // Beast's parser refused it
  }
  return std::nullopt;  // timeout, reset, ...
}

// The target as logs show it.
std::string_view logged_target(const Request& request) { return std::string_view(request.target()).substr(0, 256); }

// Logs what a handler threw; the caller answers 500.
void log_handler_failure(const Request& request, std::exception_ptr failure) {
  try {
    std::rethrow_exception(failure);
  } catch (const std::exception& error) {
    log(LogLevel::error, "HTTP handler failed", {{"target", logged_target(request)}, {"error", error.what()}});
  } catch (...) {
    log(LogLevel::error, "HTTP handler failed", {{"target", logged_target(request)}, {"error", "unknown exception"}});
  }
}

Response internal_error() { return error_response(Status::internal_server_error, "internal error"); }

// The router's choice; 400 for a version other than 1.0 and 1.1, 500 when the handler threw.
std::variant<Response, const StreamHandler*, const AsyncHandler*> respond(const Router& router, const Request& request) {
  if (request.version() != 10 && request.version() != 11) {
    return error_response(Status::bad_request, "HTTP/1.0 or HTTP/1.1 only");
  }
  try {
    return router.select(request);
  } catch (...) {
    log_handler_failure(request, std::current_exception());
  }
  return internal_error();
}

// Takes one of `cap` places counted by `counter`; false when all are taken.
bool reserve(std::atomic<std::size_t>& counter, std::size_t cap) {
  auto taken = counter.load();
  do {
    if (taken >= cap) return false;
  } while (!counter.compare_exchange_weak(taken, taken + 1));
  return true;
}

// Says we are done, then reads (and drops) what the client still sends until it closes, for at
// most `linger_limit`; then closes.
asio::awaitable<void> linger_and_close(beast::tcp_stream& stream, std::chrono::milliseconds linger_limit) {
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream.expires_after(std::min<std::chrono::steady_clock::duration>(linger_time, linger_limit));
  std::array<char, 4096> sink{};
  std::size_t drained = 0;
  while (drained < linger_bytes) {
    const auto [error, received] = co_await stream.async_read_some(asio::buffer(sink), nothrow_awaitable);
    if (error) break;
    drained += received;
  }
  stream.close();
}

// Writes `response` (within the stream's deadline), then lingers at most `linger_limit` and
// closes.
// `head_only`: the request was HEAD, so the response carries the headers (Content-Length
// included) without the body (RFC 9110, 9.3.2).
asio::awaitable<void> answer_and_close(beast::tcp_stream& stream, Response response,
                                       std::chrono::milliseconds linger_limit, bool head_only = false) {
  add_common_headers(response);
  if (head_only) response.body().clear();
  const auto [write_error, written] = co_await beast::http::async_write(stream, response, nothrow_awaitable);
  if (write_error) co_return;  // the stream closes with the coroutine
  co_await linger_and_close(stream, linger_limit);
}

// An async handler's response; 500 (logged) when it threw.
// Runs an async handler; what it throws is logged, except the cancellation that the exchange's
// deadline causes (nobody waits for that answer).
asio::awaitable<Response> answer_async(const Request& request, const AsyncHandler& handler) {
  std::exception_ptr failure;
  try {
    co_return co_await handler(request);
  } catch (const boost::system::system_error& error) {
    if (error.code() == asio::error::operation_aborted) co_return internal_error();
    failure = std::current_exception();
  } catch (...) {
    failure = std::current_exception();
  }
  log_handler_failure(request, failure);
  co_return internal_error();
}

// Runs a stream's body; what it throws is logged, except the cancellation that stop() causes.
asio::awaitable<void> run_body(const StreamResponse& response, StreamWriter& writer, std::string target) {
  try {
    co_await response.body(writer);
  } catch (const boost::system::system_error& error) {
    if (error.code() != asio::error::operation_aborted) {
      log(LogLevel::error, "HTTP stream failed", {{"target", target}, {"error", error.what()}});
    }
  } catch (const std::exception& error) {
    log(LogLevel::error, "HTTP stream failed", {{"target", target}, {"error", error.what()}});
  } catch (...) {
    log(LogLevel::error, "HTTP stream failed", {{"target", target}, {"error", "unknown exception"}});
  }
}

}  // namespace

asio::awaitable<bool> StreamWriter::write(std::string data) {
  using namespace asio::experimental::awaitable_operators;
  if (!open()) co_return false;
  if (data.empty()) co_return true;
  asio::steady_timer deadline(socket_.get_executor(), write_timeout_);
  const auto written = co_await (asio::async_write(socket_, beast::http::make_chunk(asio::buffer(data)), nothrow_awaitable) ||
                                 deadline.async_wait(nothrow_awaitable));
  // A write that lost to the deadline (or failed) may have sent part of the chunk: the stream is
  // unusable from then on.
  if (written.index() != 0 || std::get<0>(std::get<0>(written))) open_ = false;
  co_return open();
}

Response make_response(Status status, std::string_view content_type, std::string body) {
  Response response(status, 11);
  response.set(beast::http::field::content_type, content_type);
  response.body() = std::move(body);
  return response;
}

Response error_response(Status status, std::string_view message) {
  nlohmann::ordered_json body;
  body["error"] = message;
  return make_response(status, json_type, body.dump() + "\n");
}

Target split_target(std::string_view target) {
  const auto question = target.find('?');
  if (question == std::string_view::npos) return Target{target, {}};
  return Target{target.substr(0, question), target.substr(question + 1)};
}

Router& Router::add(Method method, std::string path, Handler handler) {
  routes_.push_back(Route{method, std::move(path), std::move(handler), {}, {}});
  return *this;
}

Router& Router::get_async(std::string path, AsyncHandler handler) {
  routes_.push_back(Route{Method::get, std::move(path), {}, {}, std::move(handler)});
  return *this;
}

Router& Router::stream(std::string path, StreamHandler handler) {
  routes_.push_back(Route{Method::get, std::move(path), {}, std::move(handler), {}});
  return *this;
}

Router& Router::fallback(Handler handler) {
  fallback_ = std::move(handler);
  return *this;
}

Response Router::route(const Request& request) const {
  auto selected = select(request);
  if (auto* response = std::get_if<Response>(&selected)) return std::move(*response);
  if (auto* stream_handler = std::get_if<const StreamHandler*>(&selected)) return (**stream_handler)(request).head;
  asio::io_context context;
  auto answer = asio::co_spawn(context, (*std::get<const AsyncHandler*>(selected))(request), asio::use_future);
  context.run();
  return answer.get();
}

std::variant<Response, const StreamHandler*, const AsyncHandler*> Router::select(const Request& request) const {
  const std::string_view target = request.target();
  if (target.empty() || target.front() != '/') {
    return error_response(Status::bad_request, "the request target must be a path");
  }
  const auto path = split_target(target).path;
  std::string allow;
  for (const auto& route : routes_) {
    if (route.path != path) continue;
    if (route.method == request.method()) {
      if (route.stream_handler) return &route.stream_handler;
      if (route.async_handler) return &route.async_handler;
      return route.handler(request);
    }
    if (!allow.empty()) allow += ", ";
    allow += beast::http::to_string(route.method);
  }
  if (allow.empty() && fallback_) return fallback_(request);
  if (allow.empty()) {
    std::string paths;
    for (const auto& route : routes_) {
      if (paths.find(route.path) != std::string::npos) continue;  // listed already
      paths += paths.empty() ? route.path : ", " + route.path;
    }
    return error_response(Status::not_found, "not found (paths: " + paths + ")");
  }
  auto response = error_response(Status::method_not_allowed, "method not allowed (allowed: " + allow + ")");
  response.set(beast::http::field::allow, allow);
  return response;
}

HttpServer::HttpServer(asio::io_context& context, const tcp::endpoint& endpoint, std::string what, Router router,
                       HttpLimits limits)
    : listener_(context, endpoint, std::move(what)), shared_(std::make_shared<Shared>(std::move(router), limits)) {}

HttpServer::~HttpServer() = default;

void HttpServer::start() {
  listener_.start([this](tcp::socket socket) { accept(std::move(socket)); });
}

void HttpServer::stop() {
  listener_.stop();
  std::list<std::weak_ptr<StreamStop>> stops;
  {
    const std::lock_guard lock(shared_->mutex);
    shared_->stopping = true;
    stops = shared_->stops;
  }
  for (auto& weak : stops) {
    const auto stop = weak.lock();
    if (!stop) continue;
    // On the stream's strand: the timer, and the flag its writer reads, live there. A wait on a
    // timer expired in the past completes at once, so a stream not yet waiting ends too.
    asio::post(stop->timer.get_executor(), [weak = std::move(weak)] {
      if (const auto stream = weak.lock()) {
        *stream->stopped = true;
        stream->timer.expires_at(std::chrono::steady_clock::time_point::min());
      }
    });
  }
}

tcp::endpoint HttpServer::local_endpoint() const { return listener_.local_endpoint(); }

void HttpServer::accept(tcp::socket socket) {
  bool refuse = false;
  if (shared_->active.load() >= shared_->limits.max_connections) {
    // Refusals are exchanges too (answered, then drained so that the close does not reset the
    // connection under the answer), with a cap of their own; beyond both caps: closed at once.
    if (shared_->refusing.load() >= shared_->limits.max_connections) return;  // the socket closes
    refuse = true;
  }
  ++(refuse ? shared_->refusing : shared_->active);  // released by exchange()
  const auto executor = socket.get_executor();
  asio::co_spawn(executor, exchange(std::move(socket), shared_, refuse), log_if_thrown("HTTP exchange"));
}

asio::awaitable<void> HttpServer::exchange(tcp::socket socket, std::shared_ptr<Shared> shared, bool refuse) {
  struct Release {
    std::atomic<std::size_t>* counter;
    void now() {
      if (counter != nullptr) --*counter;
      counter = nullptr;
    }
    ~Release() { now(); }
  } release{refuse ? &shared->refusing : &shared->active};
  const auto& limits = shared->limits;
  beast::tcp_stream stream(std::move(socket));
  // One deadline to read the request and write the answer; an async handler's runs from here too.
  const auto started = asio::steady_timer::clock_type::now();
  stream.expires_after(limits.exchange_timeout);

  if (refuse) {
    co_await answer_and_close(stream, error_response(Status::service_unavailable, "too many connections"),
                              limits.exchange_timeout);
    co_return;
  }
  beast::flat_buffer buffer;
  beast::http::request_parser<beast::http::string_body> parser;
  // Beast bounds the request line and the header fields each by its header_limit; the bytes the
  // head took, checked below, bound the whole head.
  parser.header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(limits.header_limit, UINT32_MAX)));
  parser.body_limit(limits.body_limit);
  auto [error, head_bytes] = co_await beast::http::async_read_header(stream, buffer, parser, nothrow_awaitable);
  std::optional<Response> response;
  if (!error && head_bytes > limits.header_limit) {
    response = head_too_large(true);  // the request line was parsed: it ended
  } else {
    if (!error) {
      std::tie(error, std::ignore) = co_await beast::http::async_read(stream, buffer, parser, nothrow_awaitable);
    }
    if (!error) {
      auto selected = respond(shared->router, parser.get());
      if (auto* stream_handler = std::get_if<const StreamHandler*>(&selected)) {
        co_await answer_stream(stream, parser.get(), **stream_handler, shared, [&release] { release.now(); });
        co_return;
      }
      if (auto* async_handler = std::get_if<const AsyncHandler*>(&selected)) {
        using namespace asio::experimental::awaitable_operators;
        asio::steady_timer deadline(stream.get_executor());
        deadline.expires_at(started + limits.exchange_timeout);  // the exchange's, not a second one
        auto answered = co_await (answer_async(parser.get(), **async_handler) || deadline.async_wait(nothrow_awaitable));
        if (answered.index() != 0) co_return;  // past the deadline: closed without an answer
        response = std::move(std::get<0>(answered));
      } else {
        response = std::move(std::get<Response>(selected));
      }
    } else {
      // The request line ended when the parser has it, or (Beast waits for the whole head
      // before parsing when it arrives in pieces) when the bytes received so far hold its CRLF.
      const auto unparsed = buffer.cdata();
      const auto received = std::string_view(static_cast<const char*>(unparsed.data()), unparsed.size());
      const bool request_line_ended = !parser.get().target().empty() ||
                                      received.substr(0, limits.header_limit).find("\r\n") != std::string_view::npos;
      response = answer_read_error(error, request_line_ended);
      if (!response) co_return;  // gone or too slow: closed without an answer
    }
  }
  const bool head_only = !error && parser.get().method() == beast::http::verb::head;
  co_await answer_and_close(stream, std::move(*response), limits.exchange_timeout, head_only);
}

asio::awaitable<void> HttpServer::answer_stream(beast::tcp_stream& stream, const Request& request,
                                                const StreamHandler& handler, std::shared_ptr<Shared> shared,
                                                std::function<void()> head_sent) {
  using namespace asio::experimental::awaitable_operators;
  const auto& limits = shared->limits;
  if (!reserve(shared->streams, limits.max_streams)) {
    co_await answer_and_close(stream, error_response(Status::service_unavailable, "too many streams"),
                              limits.exchange_timeout);
    co_return;
  }
  struct ReleaseStream {
    std::atomic<std::size_t>& streams;
    ~ReleaseStream() { --streams; }
  } release_stream{shared->streams};

  StreamResponse response;
  try {
    response = handler(request);
  } catch (...) {
    log_handler_failure(request, std::current_exception());
    response = StreamResponse{internal_error(), {}};
  }
  if (response.head.result() != Status::ok || !response.body) {
    co_await answer_and_close(stream, std::move(response.head), limits.exchange_timeout);
    co_return;
  }

  // Registered for stop() before the head goes out; a stream that comes after stop() is refused.
  const auto stop = std::make_shared<StreamStop>(stream.get_executor());
  stop->timer.expires_at(std::chrono::steady_clock::time_point::max());
  std::list<std::weak_ptr<StreamStop>>::iterator registered;
  {
    const std::lock_guard lock(shared->mutex);
    if (!shared->stopping) registered = shared->stops.insert(shared->stops.end(), stop);
    else *stop->stopped = true;
  }
  if (*stop->stopped) {
    co_await answer_and_close(stream, error_response(Status::service_unavailable, "shutting down"),
                              limits.exchange_timeout);
    co_return;
  }
  struct Unregister {
    Shared& shared;
    std::list<std::weak_ptr<StreamStop>>::iterator entry;
    ~Unregister() {
      const std::lock_guard lock(shared.mutex);
      shared.stops.erase(entry);
    }
  } unregister{*shared, registered};

  Response& head = response.head;
  head.keep_alive(false);
  if (head.find(beast::http::field::cache_control) == head.end()) {
    head.set(beast::http::field::cache_control, "no-store");
  }
  head.erase(beast::http::field::content_length);
  head.body().clear();
  head.chunked(true);
  beast::http::response_serializer<beast::http::string_body> serializer(head);
  if (auto [error, written] = co_await beast::http::async_write_header(stream, serializer, nothrow_awaitable); error) {
    co_return;  // gone or too slow: closed
  }
  stream.expires_never();  // no exchange deadline from here on; each write has its own
  head_sent();

  StreamWriter writer(stream.socket(), limits.stream_write_timeout, stop->stopped);
  co_await (run_body(response, writer, std::string(logged_target(request))) ||
            stop->timer.async_wait(nothrow_awaitable));
  if (!writer.open()) co_return;  // gone, too slow or stopped: closed without the last chunk

  stream.expires_after(limits.stream_write_timeout);
  if (auto [error, written] = co_await asio::async_write(stream, beast::http::make_chunk_last(), nothrow_awaitable);
      error) {
    co_return;
  }
  co_await linger_and_close(stream, limits.exchange_timeout);
}

}  // namespace director::net::http
