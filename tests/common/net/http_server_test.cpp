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
