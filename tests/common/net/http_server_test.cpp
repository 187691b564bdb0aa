// The HTTP layer (common/src/net/http_server.hpp) over real loopback sockets, with a router of
// trivial handlers: the contract every server of the project gets. Requests are raw bytes.
#include "net/http_server.hpp"

#include "net/awaitable.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <array>
#include <functional>
#include <optional>
#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../../server/asio_test_support.hpp"

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;
using director::net::http::HttpLimits;
using director::net::http::HttpServer;
using director::net::http::Method;
using director::net::http::Request;
using director::net::http::Response;
using director::net::http::Router;
using director::net::http::Status;
using director::net::nothrow_awaitable;
using director::test::run_until_complete;
using Json = nlohmann::json;

namespace {

struct Reply {
  int status = 0;  // 0: closed without an answer
  std::string head;  // status line and headers
  std::string body;

  // The value of header `name` (exact case as the server writes it), or empty.
  std::string header(const std::string& name) const {
    const auto at = head.find("\r\n" + name + ": ");
    if (at == std::string::npos) return {};
    const auto start = at + 4 + name.size();
    return head.substr(start, head.find("\r\n", start) - start);
  }
  Json json() const { return Json::parse(body); }
};

asio::awaitable<void> sleep_for(std::chrono::milliseconds duration) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  co_await timer.async_wait(nothrow_awaitable);
}

// Reads until the server closes (or 5 s pass) and splits the response.
asio::awaitable<Reply> read_reply(tcp::socket& socket) {
  std::string received;
  std::array<char, 65536> chunk{};
  asio::steady_timer guard(socket.get_executor(), 5s);
  guard.async_wait([&](const boost::system::error_code& error) {
    if (!error) socket.close();
  });
  for (;;) {
    const auto [error, count] = co_await socket.async_read_some(asio::buffer(chunk), nothrow_awaitable);
    received.append(chunk.data(), count);
    if (error) break;
  }
  guard.cancel();
  Reply reply;
  const auto end = received.find("\r\n\r\n");
  if (received.size() >= 12 && received.starts_with("HTTP/1.1 ")) reply.status = std::stoi(received.substr(9, 3));
  reply.head = received.substr(0, end);
  if (end != std::string::npos) reply.body = received.substr(end + 4);
  co_return reply;
}

// Sends `request` (in pieces of `piece_size` bytes when set) and reads the reply.
asio::awaitable<Reply> exchange(tcp::endpoint server, std::string request, std::size_t piece_size = 0) {
  tcp::socket socket(co_await asio::this_coro::executor);
  co_await socket.async_connect(server, asio::use_awaitable);
  if (piece_size == 0) piece_size = request.size();
  for (std::size_t at = 0; at < request.size(); at += piece_size) {
    const auto piece = std::string_view(request).substr(at, piece_size);
    co_await asio::async_write(socket, asio::buffer(piece.data(), piece.size()), nothrow_awaitable);
    if (piece_size < request.size()) co_await sleep_for(1ms);
  }
  co_return co_await read_reply(socket);
}

asio::awaitable<Reply> get(tcp::endpoint server, std::string target) {
  co_return co_await exchange(server, "GET " + target + " HTTP/1.1\r\nHost: localhost\r\n\r\n");
}

// A router of plain functions: /hello answers GET, /echo answers GET and POST with what it got.
Router test_router() {
  Router router;
  router.get("/hello", [](const Request&) {
    return director::net::http::make_response(Status::ok, "text/plain", "hello\n");
  });
  const auto echo = [](const Request& request) {
    Json body;
    body["method"] = std::string(request.method_string());
    body["target"] = std::string(request.target());
    body["query"] = std::string(director::net::http::split_target(request.target()).query);
    body["body"] = request.body();
    return director::net::http::make_response(Status::ok, director::net::http::json_type, body.dump());
  };
  router.get("/echo", echo);
  router.add(Method::post, "/echo", echo);
  router.get("/throws", [](const Request&) -> Response { throw std::runtime_error("handler bug"); });
  // Coroutine handlers: /later answers after awaiting a timer, /later-throws throws after it.
  router.get_async("/later", [](const Request& request) -> asio::awaitable<Response> {
    co_await sleep_for(std::chrono::milliseconds(50));
    co_return director::net::http::make_response(Status::ok, "text/plain",
                                                 "later " + std::string(request.target()) + "\n");
  });
  router.get_async("/never", [](const Request&) -> asio::awaitable<Response> {
    co_await sleep_for(std::chrono::milliseconds(60'000));
    co_return director::net::http::make_response(Status::ok, "text/plain", "too late\n");
  });
  router.get_async("/later-throws", [](const Request&) -> asio::awaitable<Response> {
    co_await sleep_for(std::chrono::milliseconds(10));
    throw std::runtime_error("async handler bug");
  });
  return router;
}

// An HttpServer on a loopback port of its own, run by the test's calls.
struct Served {
  explicit Served(HttpLimits limits = {})
      : http(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0), "HTTP", test_router(), limits) {
    http.start();
  }
  Reply send(const std::string& request, std::size_t piece_size = 0) {
    return run_until_complete(io, exchange(http.local_endpoint(), request, piece_size));
  }
  Reply run_get(const std::string& target) { return run_until_complete(io, get(http.local_endpoint(), target)); }

  asio::io_context io;
  HttpServer http;
};

}  // namespace

TEST_CASE("http: a handler's response, with the headers every response carries", "[http]") {
  Served served;
  const auto reply = served.run_get("/hello");
  CHECK(reply.status == 200);
  CHECK(reply.body == "hello\n");
  CHECK(reply.header("Content-Type") == "text/plain");
  CHECK(reply.header("Connection") == "close");
  CHECK(reply.header("Cache-Control") == "no-store");
  CHECK(reply.header("Content-Length") == std::to_string(reply.body.size()));
}

TEST_CASE("http: the handler sees the method, the target and the body", "[http]") {
  Served served;
  const auto got = served.run_get("/echo?a=1&b=2").json();
  CHECK(got.at("method") == "GET");
  CHECK(got.at("target") == "/echo?a=1&b=2");
  CHECK(got.at("query") == "a=1&b=2");
  const auto posted = served.send("POST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc").json();
  CHECK(posted.at("method") == "POST");
  CHECK(posted.at("body") == "abc");
}

TEST_CASE("http: routing, methods and malformed requests", "[http][requests]") {
  Served served;
  const auto post = served.send("POST /hello HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
  CHECK(post.status == 405);
  CHECK(post.header("Allow") == "GET");
  CHECK_FALSE(post.json().at("error").get<std::string>().empty());
  const auto head = served.send("HEAD /hello HTTP/1.1\r\n\r\n");
  CHECK(head.status == 405);
  CHECK(head.body.empty());  // a response to HEAD has no body
  CHECK(head.header("Content-Length") != "0");
  CHECK(served.send("DELETE /echo HTTP/1.1\r\n\r\n").header("Allow") == "GET, POST");
  const auto nowhere = served.send("GET /nowhere HTTP/1.1\r\n\r\n");
  CHECK(nowhere.status == 404);
  CHECK_THAT(nowhere.json().at("error").get<std::string>(), Catch::Contains("/hello"));
  CHECK(served.send("GET /hello/ HTTP/1.1\r\n\r\n").status == 404);
  CHECK(served.send("GET /hello HTTP/1.0\r\n\r\n").status == 200);
  CHECK(served.send("GET /hello?x=1 HTTP/1.1\r\n\r\n").status == 200);
  CHECK(served.send("GET /hello HTTP/2.0\r\n\r\n").status == 400);
  CHECK(served.send("GET  /hello HTTP/1.1\r\n\r\n").status == 400);
  CHECK(served.send("GET http://x/hello HTTP/1.1\r\n\r\n").status == 400);
  CHECK(served.send("GET * HTTP/1.1\r\n\r\n").status == 400);
  CHECK(served.send("garbage\r\n\r\n").status == 400);
  CHECK(served.send("GET /hello HTTP/1.1\r\nbad header\r\n\r\n").status == 400);
  // Byte by byte: the end of the head is found across reads.
  CHECK(served.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 1).status == 200);
}

TEST_CASE("http: the fallback answers every path no route names, whatever the method", "[http][requests]") {
  Router router = test_router();
  router.fallback([](const Request& request) {
    return director::net::http::make_response(Status::ok, "text/plain",
                                              std::string(request.method_string()) + " " + std::string(request.target()));
  });
  const auto routed = [&](Method method, const char* target) {
    Request request(method, target, 11);
    return router.route(request);
  };
  CHECK(routed(Method::get, "/nowhere?x=1").body() == "GET /nowhere?x=1");
  CHECK(routed(Method::post, "/a/b").body() == "POST /a/b");
  CHECK(routed(Method::get, "/hello").body() == "hello\n");     // a route still wins
  CHECK(routed(Method::post, "/hello").result() == Status::method_not_allowed);  // its path is known
  CHECK(routed(Method::get, "*").result() == Status::bad_request);               // not a path
}

TEST_CASE("http: a handler that throws is answered 500, and the server goes on", "[http]") {
  Served served;
  CHECK(served.run_get("/throws").status == 500);
  CHECK(served.run_get("/hello").status == 200);
}

TEST_CASE("http: oversized heads are refused, 414 for the request line, 431 for headers", "[http][requests]") {
  Served served;
  const auto long_target = served.send("GET /hello?" + std::string(9000, 'a') + " HTTP/1.1\r\n\r\n");
  CHECK(long_target.status == 414);
  const auto big_headers = served.send("GET /hello HTTP/1.1\r\nX-Padding: " + std::string(9000, 'p') + "\r\n\r\n");
  CHECK(big_headers.status == 431);
  CHECK_FALSE(big_headers.json().at("error").get<std::string>().empty());
  // Just within the limit: a head of exactly 8192 bytes.
  const std::string prefix = "GET /hello HTTP/1.1\r\nX-Padding: ";
  const std::string suffix = "\r\n\r\n";
  CHECK(served.send(prefix + std::string(8192 - prefix.size() - suffix.size(), 'p') + suffix).status == 200);
  CHECK(served.send(prefix + std::string(8193 - prefix.size() - suffix.size(), 'p') + suffix).status == 431);
  // The same in pieces (Beast then waits for the whole head before parsing it).
  CHECK(served.send("GET /hello?" + std::string(9000, 'a') + " HTTP/1.1\r\n\r\n", 1000).status == 414);
  CHECK(served.send("GET /hello HTTP/1.1\r\nX-Padding: " + std::string(9000, 'p') + "\r\n\r\n", 1000).status == 431);
  CHECK(served.send(prefix + std::string(8192 - prefix.size() - suffix.size(), 'p') + suffix, 1000).status == 200);
}

TEST_CASE("http: a body beyond the limit is refused with 413", "[http][requests]") {
  HttpLimits limits;
  limits.body_limit = 16;
  Served served(limits);
  const auto within = served.send("POST /echo HTTP/1.1\r\nContent-Length: 16\r\n\r\n" + std::string(16, 'b'));
  CHECK(within.status == 200);
  const auto beyond = served.send("POST /echo HTTP/1.1\r\nContent-Length: 17\r\n\r\n" + std::string(17, 'b'));
  CHECK(beyond.status == 413);
}

TEST_CASE("http: a silent client is dropped at the deadline", "[http][requests]") {
  HttpLimits limits;
  limits.exchange_timeout = 200ms;
  Served served(limits);
  const auto started = std::chrono::steady_clock::now();
  const auto reply = served.send("GET /hello HTTP/1.1\r\n");
  const auto elapsed = std::chrono::steady_clock::now() - started;
  CHECK(reply.status == 0);  // closed without an answer
  CHECK(elapsed >= 180ms);
  CHECK(elapsed < 3s);
}

TEST_CASE("http: the deadline covers the whole exchange, not each read", "[http][requests]") {
  HttpLimits limits;
  limits.exchange_timeout = 300ms;
  Served served(limits);
  // One byte every 50 ms: each read is quick, the whole head takes over 1 s.
  const auto started = std::chrono::steady_clock::now();
  const auto reply = run_until_complete(served.io, [&]() -> asio::awaitable<Reply> {
    tcp::socket socket(co_await asio::this_coro::executor);
    co_await socket.async_connect(served.http.local_endpoint(), asio::use_awaitable);
    const std::string request = "GET /hello HTTP/1.1\r\nX: yyyyy\r\n\r\n";
    for (const char byte : request) {
      const auto [error, written] = co_await asio::async_write(socket, asio::buffer(&byte, 1), nothrow_awaitable);
      if (error) break;
      co_await sleep_for(50ms);
    }
    co_return co_await read_reply(socket);
  }());
  CHECK(reply.status == 0);
  CHECK(std::chrono::steady_clock::now() - started < 3s);
}

TEST_CASE("http: connections beyond the cap get 503, and the cap frees up", "[http][requests]") {
  HttpLimits limits;
  limits.max_connections = 2;
  limits.exchange_timeout = 300ms;
  Served served(limits);
  const auto endpoint = served.http.local_endpoint();
  const auto replies = run_until_complete(served.io, [&]() -> asio::awaitable<std::vector<Reply>> {
    const auto executor = co_await asio::this_coro::executor;
    tcp::socket idle_1(executor);
    tcp::socket idle_2(executor);
    co_await idle_1.async_connect(endpoint, asio::use_awaitable);
    co_await idle_2.async_connect(endpoint, asio::use_awaitable);
    co_await sleep_for(50ms);  // both accepted and waiting for their request
    std::vector<Reply> out;
    out.push_back(co_await get(endpoint, "/hello"));
    co_await sleep_for(500ms);  // the idle ones hit their deadline
    out.push_back(co_await get(endpoint, "/hello"));
    co_return out;
  }());
  CHECK(replies.at(0).status == 503);
  CHECK(replies.at(1).status == 200);
}

TEST_CASE("http: after stop, no new connection is answered", "[http]") {
  Served served;
  const auto endpoint = served.http.local_endpoint();
  CHECK(served.run_get("/hello").status == 200);
  served.http.stop();
  const auto refused = run_until_complete(served.io, [&]() -> asio::awaitable<bool> {
    co_await sleep_for(20ms);  // the stop runs on the listener's strand
    tcp::socket socket(co_await asio::this_coro::executor);
    const auto [error] = co_await socket.async_connect(endpoint, nothrow_awaitable);
    co_return error == asio::error::connection_refused;
  }());
  CHECK(refused);
}

TEST_CASE("http: the listener refuses an address it cannot bind, naming it", "[http]") {
  Served served;
  CHECK_THROWS_WITH(HttpServer(served.io, served.http.local_endpoint(), "HTTP", Router{}),
                    Catch::Contains("cannot listen for HTTP on 127.0.0.1:") &&
                        Catch::Contains("Address already in use"));
}

TEST_CASE("http: concurrent exchanges on a multi-threaded io_context", "[http][threads]") {
  // The server's io_context runs on four threads, as the agent's does (each exchange on its
  // strand); a client on its own io_context sends 64 requests at once. Meant for TSan too.
  asio::io_context server_io;
  std::atomic<int> handled{0};
  Router router;
  router.get("/count", [&](const Request&) {
    ++handled;
    return director::net::http::make_response(Status::ok, "text/plain", "counted\n");
  });
  HttpLimits limits;
  limits.max_connections = 128;
  HttpServer http(server_io, tcp::endpoint(asio::ip::address_v4::loopback(), 0), "HTTP", std::move(router), limits);
  http.start();
  auto work = asio::make_work_guard(server_io);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) threads.emplace_back([&] { server_io.run(); });

  asio::io_context client_io;
  std::vector<asio::awaitable<Reply>> requests;
  for (int i = 0; i < 64; ++i) requests.push_back(get(http.local_endpoint(), "/count"));
  const auto replies = run_until_complete(client_io, director::test::gather(std::move(requests)));

  http.stop();
  work.reset();
  server_io.stop();
  for (auto& thread : threads) thread.join();
  int ok = 0;
  for (const auto& reply : replies) ok += reply.status == 200 && reply.body == "counted\n" ? 1 : 0;
  CHECK(ok == 64);
  CHECK(handled.load() == 64);
}

// Streams (Router::stream).
namespace {

using director::net::http::StreamResponse;
using director::net::http::StreamWriter;

// The body of a chunked message, decoded; std::nullopt when it is not well-formed chunked
// encoding. `complete` tells whether the last chunk was there.
struct Chunked {
  std::vector<std::string> chunks;
  bool complete = false;
};
std::optional<Chunked> decode_chunked(std::string_view body) {
  Chunked decoded;
  for (;;) {
    const auto line_end = body.find("\r\n");
    if (line_end == std::string_view::npos) return body.empty() ? std::optional(decoded) : std::nullopt;
    std::size_t size = 0;
    try {
      size = std::stoul(std::string(body.substr(0, line_end)), nullptr, 16);
    } catch (const std::exception&) {
      return std::nullopt;
    }
    body.remove_prefix(line_end + 2);
    if (size == 0) {
      decoded.complete = body == "\r\n";
      return decoded.complete ? std::optional(decoded) : std::nullopt;
    }
    if (body.size() < size + 2 || body.substr(size, 2) != "\r\n") return std::nullopt;
    decoded.chunks.emplace_back(body.substr(0, size));
    body.remove_prefix(size + 2);
  }
}

StreamResponse ndjson_stream(std::function<asio::awaitable<void>(StreamWriter&)> body) {
  return StreamResponse{director::net::http::make_response(Status::ok, "application/x-ndjson", ""), std::move(body)};
}

// What a stream body saw, for the test to check.
struct BodyLog {
  int writes_ok = 0;
  bool write_failed = false;  // a write returned false
  bool cancelled = false;     // an await of its was cancelled
  bool returned = false;
};

// An HttpServer with one stream route, /feed, run by the test's calls.
struct StreamServed {
  StreamServed(director::net::http::StreamHandler feed, HttpLimits limits)
      : http(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0), "HTTP",
             test_router().stream("/feed", std::move(feed)), limits) {
    http.start();
  }
  asio::io_context io;
  HttpServer http;
};

// Connects and sends GET `target`; the reply is left to read.
asio::awaitable<tcp::socket> open_get(tcp::endpoint server, std::string target) {
  tcp::socket socket(co_await asio::this_coro::executor);
  co_await socket.async_connect(server, asio::use_awaitable);
  const std::string request = "GET " + target + " HTTP/1.1\r\nHost: localhost\r\n\r\n";
  co_await asio::async_write(socket, asio::buffer(request), asio::use_awaitable);
  co_return socket;
}

// Reads until `received` holds `text` (true) or the connection ends or 5 s pass (false).
asio::awaitable<bool> read_until_seen(tcp::socket& socket, std::string& received, std::string_view text) {
  std::array<char, 4096> chunk{};
  asio::steady_timer guard(socket.get_executor(), 5s);
  bool timed_out = false;
  guard.async_wait([&](const boost::system::error_code& error) {
    if (!error) {
      timed_out = true;
      socket.cancel();
    }
  });
  while (received.find(text) == std::string::npos) {
    const auto [error, count] = co_await socket.async_read_some(asio::buffer(chunk), nothrow_awaitable);
    received.append(chunk.data(), count);
    if (error) break;
  }
  guard.cancel();
  co_return !timed_out && received.find(text) != std::string::npos;
}

}  // namespace

TEST_CASE("http stream: a client reads several chunks, then the last chunk", "[http][stream]") {
  BodyLog log;
  StreamServed served(
      [&](const Request&) {
        return ndjson_stream([&](StreamWriter& writer) -> asio::awaitable<void> {
          for (const char* line : {"{\"n\":1}\n", "{\"n\":2}\n", "{\"n\":3}\n"}) {
            if (!co_await writer.write(line)) co_return;
            ++log.writes_ok;
            co_await sleep_for(20ms);
          }
          CHECK(co_await writer.write(""));  // sends nothing
        });
      },
      HttpLimits{});
  const auto reply = run_until_complete(served.io, get(served.http.local_endpoint(), "/feed"));
  CHECK(reply.status == 200);
  CHECK(reply.header("Transfer-Encoding") == "chunked");
  CHECK(reply.header("Content-Length").empty());
  CHECK(reply.header("Content-Type") == "application/x-ndjson");
  CHECK(reply.header("Cache-Control") == "no-store");
  CHECK(reply.header("Connection") == "close");
  const auto body = decode_chunked(reply.body);
  REQUIRE(body);
  CHECK(body->complete);
  CHECK(body->chunks == std::vector<std::string>{"{\"n\":1}\n", "{\"n\":2}\n", "{\"n\":3}\n"});
  CHECK(log.writes_ok == 3);
}

TEST_CASE("http stream: a refusing head is an ordinary response, other methods are 405", "[http][stream]") {
  StreamServed served(
      [](const Request&) {
        auto head = director::net::http::error_response(Status::service_unavailable, "feed full");
        head.set(boost::beast::http::field::retry_after, "5");
        return StreamResponse{std::move(head), {}};
      },
      HttpLimits{});
  const auto refused = run_until_complete(served.io, get(served.http.local_endpoint(), "/feed"));
  CHECK(refused.status == 503);
  CHECK(refused.header("Retry-After") == "5");
  CHECK(refused.header("Transfer-Encoding").empty());
  CHECK(refused.json()["error"] == "feed full");
  CHECK(refused.header("Content-Length") == std::to_string(refused.body.size()));

  const auto post = run_until_complete(
      served.io, exchange(served.http.local_endpoint(), "POST /feed HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"));
  CHECK(post.status == 405);
  CHECK(post.header("Allow") == "GET");
}

TEST_CASE("http stream: Router::route gives a stream's head without running its body", "[http][stream]") {
  bool body_ran = false;
  Router router;
  router.stream("/feed", [&](const Request&) {
    return ndjson_stream([&](StreamWriter&) -> asio::awaitable<void> {
      body_ran = true;
      co_return;
    });
  });
  Request request(Method::get, "/feed?x=1", 11);
  const auto head = router.route(request);
  CHECK(head.result() == Status::ok);
  CHECK(head[boost::beast::http::field::content_type] == "application/x-ndjson");
  CHECK_FALSE(body_ran);
}

TEST_CASE("http stream: a client that stops reading is dropped at the write deadline", "[http][stream]") {
  HttpLimits limits;
  limits.stream_write_timeout = 200ms;
  limits.max_streams = 1;
  BodyLog log;
  std::chrono::steady_clock::time_point returned_at;
  StreamServed served(
      [&](const Request&) {
        return ndjson_stream([&](StreamWriter& writer) -> asio::awaitable<void> {
          while (co_await writer.write(std::string(1024 * 1024, 'x'))) ++log.writes_ok;
          log.write_failed = !writer.open();
          CHECK_FALSE(co_await writer.write("more"));  // false at once from then on
          log.returned = true;
          returned_at = std::chrono::steady_clock::now();
        });
      },
      limits);
  const auto endpoint = served.http.local_endpoint();
  const auto started = std::chrono::steady_clock::now();
  const bool next_stream_served = run_until_complete(served.io, [&]() -> asio::awaitable<bool> {
    auto reader = co_await open_get(endpoint, "/feed");  // never reads
    for (int i = 0; i < 100 && !log.returned; ++i) co_await sleep_for(50ms);
    // The dropped stream's place is free again.
    auto next = co_await open_get(endpoint, "/feed");
    std::string received;
    co_return co_await read_until_seen(next, received, "HTTP/1.1 200 OK");
  }());
  REQUIRE(log.returned);
  CHECK(log.write_failed);
  CHECK(returned_at - started < 4s);
  // Bounded: what the kernel's socket buffers took, then one chunk that did not go.
  CHECK(log.writes_ok < 64);
  CHECK(next_stream_served);
}

TEST_CASE("http stream: stop() ends every stream at once, mid-wait", "[http][stream]") {
  HttpLimits limits;
  limits.max_streams = 4;
  std::vector<BodyLog> logs(2);
  std::size_t next_log = 0;
  StreamServed served(
      [&](const Request&) {
        return ndjson_stream([&log = logs.at(next_log++)](StreamWriter& writer) -> asio::awaitable<void> {
          // After stop(), the body sees write() return false or an await of its throw
          // operation_aborted (then it ends by the exception, which the server does not log).
          struct Ended {
            BodyLog& log;
            ~Ended() { log.returned = true; }
          } ended{log};
          try {
            if (co_await writer.write("{\"type\":\"snapshot\"}\n")) ++log.writes_ok;
            // Waits like a feed between heartbeats; stop() cancels the wait.
            asio::steady_timer heartbeat(co_await asio::this_coro::executor, 60s);
            const auto [error] = co_await heartbeat.async_wait(nothrow_awaitable);
            log.cancelled = error == asio::error::operation_aborted;
            log.write_failed = !co_await writer.write("{\"type\":\"heartbeat\"}\n");
          } catch (const boost::system::system_error& error) {
            log.cancelled = error.code() == asio::error::operation_aborted;
            throw;
          }
        });
      },
      limits);
  const auto endpoint = served.http.local_endpoint();
  const auto ended = run_until_complete(served.io, [&]() -> asio::awaitable<std::vector<std::string>> {
    std::vector<tcp::socket> clients;
    std::vector<std::string> received(2);
    for (std::size_t i = 0; i < 2; ++i) {
      clients.push_back(co_await open_get(endpoint, "/feed"));
      CHECK(co_await read_until_seen(clients[i], received[i], "snapshot"));
    }
    const auto stop_at = std::chrono::steady_clock::now();
    served.http.stop();
    for (std::size_t i = 0; i < 2; ++i) {
      const bool closed = !co_await read_until_seen(clients[i], received[i], "never sent");
      CHECK(closed);
    }
    CHECK(std::chrono::steady_clock::now() - stop_at < 1s);
    co_return received;
  }());
  for (std::size_t i = 0; i < 2; ++i) {
    INFO("stream " << i);
    CHECK(logs[i].cancelled);
    CHECK(logs[i].returned);  // the body ended
    CHECK(ended[i].find("heartbeat") == std::string::npos);
    CHECK_FALSE(ended[i].ends_with("0\r\n\r\n"));  // truncated: no last chunk
  }
}

TEST_CASE("http stream: the cap on streams holds, and streams leave exchanges free", "[http][stream]") {
  HttpLimits limits;
  limits.max_streams = 2;
  limits.max_connections = 1;
  int handled = 0;
  StreamServed served(
      [&](const Request&) {
        ++handled;
        return ndjson_stream([](StreamWriter& writer) -> asio::awaitable<void> {
          while (co_await writer.write("{\"type\":\"heartbeat\"}\n")) co_await sleep_for(20ms);
        });
      },
      limits);
  const auto endpoint = served.http.local_endpoint();
  const auto replies = run_until_complete(served.io, [&]() -> asio::awaitable<std::vector<Reply>> {
    std::vector<tcp::socket> streams;
    for (int i = 0; i < 2; ++i) {
      streams.push_back(co_await open_get(endpoint, "/feed"));
      std::string received;
      CHECK(co_await read_until_seen(streams.back(), received, "heartbeat"));
    }
    std::vector<Reply> out;
    out.push_back(co_await get(endpoint, "/feed"));   // a third stream: refused
    out.push_back(co_await get(endpoint, "/hello"));  // an exchange: the streams do not hold it
    streams.front().close();                          // its next write fails: the place frees up
    co_await sleep_for(200ms);
    auto again = co_await open_get(endpoint, "/feed");
    std::string received;
    CHECK(co_await read_until_seen(again, received, "heartbeat"));
    co_return out;
  }());
  CHECK(replies.at(0).status == 503);
  CHECK(replies.at(0).json()["error"] == "too many streams");
  CHECK(replies.at(1).status == 200);
  CHECK(handled == 3);  // the refused stream's handler did not run
}

TEST_CASE("http stream: streams on a multi-threaded io_context, stopped from another thread", "[http][stream][threads]") {
  // Four server threads, streams writing every few milliseconds, stop() from the test's thread
  // while they write. Meant for TSan too.
  asio::io_context server_io;
  std::atomic<int> ended{0};
  Router router;
  router.stream("/feed", [&](const Request&) {
    return ndjson_stream([&](StreamWriter& writer) -> asio::awaitable<void> {
      struct Ended {
        std::atomic<int>& count;
        ~Ended() { ++count; }
      } counted{ended};
      while (co_await writer.write("{\"type\":\"heartbeat\"}\n")) co_await sleep_for(5ms);
    });
  });
  HttpServer http(server_io, tcp::endpoint(asio::ip::address_v4::loopback(), 0), "HTTP", std::move(router), {});
  http.start();
  auto work = asio::make_work_guard(server_io);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) threads.emplace_back([&] { server_io.run(); });

  asio::io_context client_io;
  const auto endpoint = http.local_endpoint();
  const auto closed_in_time = run_until_complete(client_io, [&]() -> asio::awaitable<int> {
    std::vector<tcp::socket> clients;
    for (int i = 0; i < 8; ++i) {
      clients.push_back(co_await open_get(endpoint, "/feed"));
      std::string received;
      CHECK(co_await read_until_seen(clients.back(), received, "heartbeat"));
    }
    const auto stop_at = std::chrono::steady_clock::now();
    http.stop();
    int closed = 0;
    for (auto& client : clients) {
      std::string received;
      if (!co_await read_until_seen(client, received, "never sent") &&
          std::chrono::steady_clock::now() - stop_at < 1s) {
        ++closed;
      }
    }
    co_return closed;
  }());
  CHECK(closed_in_time == 8);
  for (int i = 0; i < 100 && ended.load() < 8; ++i) std::this_thread::sleep_for(10ms);
  CHECK(ended.load() == 8);
  work.reset();
  server_io.stop();
  for (auto& thread : threads) thread.join();
}

TEST_CASE("http: an async handler answers after its awaits, one that throws is 500, route() runs it", "[http][async]") {
  Served served;
  const auto reply = served.run_get("/later?x=1");
  CHECK(reply.status == 200);
  CHECK(reply.body == "later /later?x=1\n");
  CHECK(reply.header("Connection") == "close");
  CHECK(reply.header("Content-Length") == std::to_string(reply.body.size()));
  CHECK(served.run_get("/later-throws").status == 500);
  CHECK(served.run_get("/hello").status == 200);
  const auto post = served.send("POST /later HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
  CHECK(post.status == 405);
  CHECK(post.header("Allow") == "GET");

  const Router router = test_router();
  const Request request(Method::get, "/later", 11);
  CHECK(router.route(request).body() == "later /later\n");
}

TEST_CASE("http: an async handler still running at the deadline is cancelled, the client closed", "[http][async]") {
  HttpLimits limits;
  limits.exchange_timeout = 200ms;
  Served served(limits);
  const auto started = std::chrono::steady_clock::now();
  const auto reply = served.run_get("/never");
  const auto elapsed = std::chrono::steady_clock::now() - started;
  CHECK(reply.status == 0);  // closed without an answer
  CHECK(elapsed >= 180ms);
  CHECK(elapsed < 3s);
  CHECK(served.run_get("/later").status == 200);  // the server goes on
}

TEST_CASE("http: an async handler's deadline is the exchange's, counted from its start", "[http][async]") {
  HttpLimits limits;
  limits.exchange_timeout = 600ms;
  Served served(limits);
  // The head takes 400 ms to arrive; the handler never answers: the client is closed 600 ms
  // after it connected, not 600 ms after the handler started.
  const auto started = std::chrono::steady_clock::now();
  const auto reply = run_until_complete(served.io, [&]() -> asio::awaitable<Reply> {
    tcp::socket socket(co_await asio::this_coro::executor);
    co_await socket.async_connect(served.http.local_endpoint(), asio::use_awaitable);
    const std::string start = "GET /never HTTP/1.1\r\n";
    co_await asio::async_write(socket, asio::buffer(start), nothrow_awaitable);
    co_await sleep_for(400ms);
    const std::string end = "Host: test\r\n\r\n";
    co_await asio::async_write(socket, asio::buffer(end), nothrow_awaitable);
    co_return co_await read_reply(socket);
  }());
  const auto elapsed = std::chrono::steady_clock::now() - started;
  CHECK(reply.status == 0);  // closed without an answer
  CHECK(elapsed >= 550ms);
  CHECK(elapsed < 900ms);
}
