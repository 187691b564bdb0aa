// The HTTP client (common/src/net/http_client.hpp) against real loopback servers, over TCP and a
// unix-domain socket: each server answers one connection with scripted raw bytes
// (scripted_server.hpp).
#include "net/http_client.hpp"

#include "net/awaitable.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <unistd.h>
#include <variant>
#include <vector>

#include "../../server/asio_test_support.hpp"
#include "scripted_server.hpp"

namespace asio = boost::asio;
namespace http = director::net::http;
using asio::ip::tcp;
using namespace std::chrono_literals;
using director::net::nothrow_awaitable;
using director::test::answering;
using director::test::collect_into;
using director::test::get;
using director::test::run_until_complete;
using director::test::Script;

namespace {

template <typename Acceptor>
asio::awaitable<void> accept_one(std::shared_ptr<Acceptor> acceptor, std::shared_ptr<Script> script) {
  auto [error, socket] = co_await acceptor->async_accept(nothrow_awaitable);
  if (error) co_return;
  co_await director::test::play(socket, *script);
}

// A TCP server on 127.0.0.1 answering one connection with `script`.
http::TcpEndpoint serve_tcp(asio::io_context& io, std::shared_ptr<Script> script) {
  auto acceptor = std::make_shared<tcp::acceptor>(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  asio::co_spawn(io, accept_one(acceptor, script), director::net::log_if_thrown("test server"));
  return {"127.0.0.1", acceptor->local_endpoint().port()};
}

// A unix-socket server answering one connection with `script`.
struct UnixServer {
  std::filesystem::path path;
  ~UnixServer() { std::filesystem::remove(path); }
};
http::UnixEndpoint serve_unix(asio::io_context& io, std::shared_ptr<Script> script, UnixServer& server) {
  server.path = std::filesystem::temp_directory_path() / ("director-http-client-" + std::to_string(::getpid()) + ".sock");
  std::filesystem::remove(server.path);
  using Local = asio::local::stream_protocol;
  auto acceptor = std::make_shared<Local::acceptor>(io, Local::endpoint(server.path.string()));
  asio::co_spawn(io, accept_one(acceptor, script), director::net::log_if_thrown("test server"));
  return {server.path.string()};
}

const std::string ok_hello = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nApi-Version: 1.41\r\n\r\nhello";

}  // namespace

TEST_CASE("request() over TCP returns the response and sends Host and Connection: close") {
  asio::io_context io;
  auto script = answering({{ok_hello}});
  const auto endpoint = serve_tcp(io, script);
  const auto result = run_until_complete(io, http::request(endpoint, get("/_ping")));
  REQUIRE(result.has_value());
  CHECK(result->result_int() == 200);
  CHECK(result->body() == "hello");
  CHECK((*result)["Api-Version"] == "1.41");
  CHECK(script->request_head.starts_with("GET /_ping HTTP/1.1\r\n"));
  CHECK(script->request_head.find("Host: localhost") != std::string::npos);
  CHECK(script->request_head.find("Connection: close") != std::string::npos);
}

TEST_CASE("request() keeps the caller's Host and sends a POST's length") {
  asio::io_context io;
  auto script = answering({{ok_hello}});
  const auto endpoint = serve_tcp(io, script);
  auto post = http::ClientRequest(boost::beast::http::verb::post, "/containers/x/start", 11);
  post.set(boost::beast::http::field::host, "docker");
  const auto result = run_until_complete(io, http::request(endpoint, post));
  REQUIRE(result.has_value());
  CHECK(script->request_head.find("Host: docker") != std::string::npos);
  CHECK(script->request_head.find("Content-Length: 0") != std::string::npos);
}

TEST_CASE("request() resolves a host name") {
  asio::io_context io;
  auto script = answering({{ok_hello}});
  auto endpoint = serve_tcp(io, script);
  endpoint.host = "localhost";
  const auto result = run_until_complete(io, http::request(endpoint, get("/")));
  // localhost may resolve to ::1 first; the client tries each address.
  REQUIRE(result.has_value());
  CHECK(result->body() == "hello");
}

TEST_CASE("request() over a unix socket") {
  asio::io_context io;
  UnixServer server;
  auto script = answering({{ok_hello}});
  const auto endpoint = serve_unix(io, script, server);
  const auto result = run_until_complete(io, http::request(endpoint, get("/v1.41/_ping")));
  REQUIRE(result.has_value());
  CHECK(result->body() == "hello");
  CHECK(http::to_string(endpoint) == "unix://" + server.path.string());
}

TEST_CASE("request() undoes chunked encoding, split anywhere") {
  asio::io_context io;
  auto script = answering({{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"},
                           {"lo\r\n", 20ms},
                           {"6\r\n world\r\n0\r\n\r\n", 20ms}});
  const auto endpoint = serve_tcp(io, script);
  const auto result = run_until_complete(io, http::request(endpoint, get("/")));
  REQUIRE(result.has_value());
  CHECK(result->body() == "hello world");
}

TEST_CASE("request() reads a body that ends when the server closes") {
  asio::io_context io;
  auto script = answering({{"HTTP/1.1 404 Not Found\r\n\r\n{\"message\":\"no such container\"}"}});
  const auto endpoint = serve_tcp(io, script);
  const auto result = run_until_complete(io, http::request(endpoint, get("/")));
  REQUIRE(result.has_value());
  CHECK(result->result_int() == 404);
  CHECK(result->body() == "{\"message\":\"no such container\"}");
}

TEST_CASE("request() fails with connect when nothing listens") {
  asio::io_context io;
  SECTION("TCP") {
    tcp::acceptor closed(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    const auto port = closed.local_endpoint().port();
    closed.close();
    const auto result = run_until_complete(io, http::request(http::TcpEndpoint{"127.0.0.1", port}, get("/")));
    REQUIRE(result.has_error());
    CHECK(result.error().kind == http::ClientErrorKind::connect);
    CHECK(result.error().message.find("127.0.0.1:" + std::to_string(port)) != std::string::npos);
  }
  SECTION("unix socket") {
    const auto result = run_until_complete(io, http::request(http::UnixEndpoint{"/nonexistent/docker.sock"}, get("/")));
    REQUIRE(result.has_error());
    CHECK(result.error().kind == http::ClientErrorKind::connect);
    CHECK(result.error().message.find("unix:///nonexistent/docker.sock") != std::string::npos);
  }
  SECTION("a name that does not resolve") {
    const auto result = run_until_complete(io, http::request(http::TcpEndpoint{"no-such-host.invalid", 80}, get("/")));
    REQUIRE(result.has_error());
    CHECK(result.error().kind == http::ClientErrorKind::connect);
  }
}

TEST_CASE("request() gives up at its deadline when the server is silent or slow") {
  asio::io_context io;
  SECTION("silent") {
    auto script = answering({}, true);
    const auto endpoint = serve_tcp(io, script);
    const auto started = std::chrono::steady_clock::now();
    const auto result = run_until_complete(io, http::request(endpoint, get("/"), {.timeout = 200ms}));
    const auto took = std::chrono::steady_clock::now() - started;
    REQUIRE(result.has_error());
    CHECK(result.error().kind == http::ClientErrorKind::timeout);
    CHECK(result.error().message.find("within 200 ms") != std::string::npos);
    CHECK(took >= 190ms);
    CHECK(took < 2s);
  }
  SECTION("a body trickling in past the deadline") {
    auto script = answering({{"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab"}, {"cd", 150ms}, {"ef", 150ms}}, true);
    const auto endpoint = serve_tcp(io, script);
    const auto result = run_until_complete(io, http::request(endpoint, get("/"), {.timeout = 200ms}));
    REQUIRE(result.has_error());
    CHECK(result.error().kind == http::ClientErrorKind::timeout);
  }
}

TEST_CASE("request() refuses a head or body beyond its limit") {
  asio::io_context io;
  SECTION("body by Content-Length") {
    auto script = answering({{"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + std::string(100, 'x')}});
    const auto endpoint = serve_tcp(io, script);
    const auto result = run_until_complete(io, http::request(endpoint, get("/"), {.body_limit = 99}));
    REQUIRE(result.has_error());
    CHECK(result.error().kind == http::ClientErrorKind::too_large);
  }
  SECTION("chunked body") {
    auto script = answering({{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n" + std::string(64, 'x') +
                              "\r\n40\r\n" + std::string(64, 'x') + "\r\n0\r\n\r\n"}});
    const auto endpoint = serve_tcp(io, script);
    const auto result = run_until_complete(io, http::request(endpoint, get("/"), {.body_limit = 100}));
    REQUIRE(result.has_error());
    CHECK(result.error().kind == http::ClientErrorKind::too_large);
  }
  SECTION("head") {
    auto script = answering({{"HTTP/1.1 200 OK\r\nX-Big: " + std::string(20000, 'x') + "\r\nContent-Length: 0\r\n\r\n"}});
    const auto endpoint = serve_tcp(io, script);
    const auto result = run_until_complete(io, http::request(endpoint, get("/")));
    REQUIRE(result.has_error());
    CHECK(result.error().kind == http::ClientErrorKind::too_large);
  }
}

TEST_CASE("request() reports an answer that is not HTTP as protocol") {
  asio::io_context io;
  auto script = answering({{"SSH-2.0-OpenSSH_9.2\r\n\r\n"}});
  const auto endpoint = serve_tcp(io, script);
  const auto result = run_until_complete(io, http::request(endpoint, get("/")));
  REQUIRE(result.has_error());
  CHECK(result.error().kind == http::ClientErrorKind::protocol);
}

TEST_CASE("stream() hands each piece of an endless chunked body over as it arrives") {
  asio::io_context io;
  UnixServer server;
  auto script = answering({{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"},
                           {"6\r\nline1\n\r\n", 50ms},
                           {"6\r\nline2\n\r\n", 300ms},  // later than the head's deadline: no deadline now
                           {"6\r\nline3\n\r\n", 50ms}},
                          true);
  const auto endpoint = serve_unix(io, script, server);
  unsigned head_status = 0;
  std::string received;
  const auto result = run_until_complete(
      io, http::stream(
              endpoint, get("/events"), [&](const http::StreamHead& head) { head_status = head.result_int(); },
              [&](std::string_view data) {
                CHECK(head_status == 200);  // the head came first
                received += data;
                return received.find("line3\n") == std::string::npos;
              },
              {.timeout = 200ms}));
  REQUIRE(result.has_value());
  CHECK(result->result_int() == 200);
  CHECK(received == "line1\nline2\nline3\n");
}

TEST_CASE("stream() ends when the server ends the body, and says when it broke") {
  asio::io_context io;
  SECTION("a complete chunked body") {
    auto script = answering({{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"}});
    const auto endpoint = serve_tcp(io, script);
    std::string received;
    const auto result = run_until_complete(io, http::stream(endpoint, get("/events"), {}, collect_into(received)));
    REQUIRE(result.has_value());
    CHECK(received == "abc");
  }
  SECTION("closed in the middle of a chunked body") {
    auto script = answering({{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"}});
    const auto endpoint = serve_tcp(io, script);
    std::string received;
    const auto result = run_until_complete(io, http::stream(endpoint, get("/events"), {}, collect_into(received)));
    REQUIRE(result.has_error());
    CHECK(result.error().kind == http::ClientErrorKind::protocol);
    CHECK(received == "abc");
  }
}

// Only in a network namespace of its own, where iptables drops loopback packets without touching
// the machine's: ctest common/net/keepalive-netns runs it so (unshare -n), as root.
TEST_CASE("stream() over TCP fails once its peer vanishes: keepalive probes go unanswered", "[.netns]") {
  const char* marked = std::getenv("DIRECTOR_TEST_NETNS");
  // This process's interfaces (/proc/self/net/dev: "  name: counters", after two header lines).
  std::vector<std::string> interfaces;
  std::ifstream dev("/proc/self/net/dev");
  for (std::string line; std::getline(dev, line);) {
    if (const auto colon = line.find(':'); colon != std::string::npos) {
      interfaces.push_back(line.substr(line.find_first_not_of(' '), colon - line.find_first_not_of(' ')));
    }
  }
  INFO("refusing to add an iptables rule outside a private network namespace");
  REQUIRE((marked && std::string_view(marked) == "1" && interfaces == std::vector<std::string>{"lo"}));

  asio::io_context io;
  // The head and a line, then silence with the connection open (Docker's /events while nothing
  // happens); once the line arrived, every packet to the server is dropped: the peer is gone
  // without a FIN or RST, as behind a NAT that forgot the connection.
  auto script = answering({{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nline1\n\r\n"}}, true);
  const auto endpoint = serve_tcp(io, script);
  const std::string drop = "iptables -A INPUT -p tcp --dport " + std::to_string(endpoint.port) + " -j DROP";
  std::string received;
  int dropped = -1;
  std::chrono::steady_clock::time_point silent_since{};
  const auto ended = run_until_complete(io, [&]() -> asio::awaitable<std::variant<http::ClientResult<http::StreamHead>, std::tuple<boost::system::error_code>>> {
    using namespace asio::experimental::awaitable_operators;
    asio::steady_timer give_up(co_await asio::this_coro::executor, 20s);
    co_return co_await (
        http::stream(endpoint, get("/events"), {},
                     [&](std::string_view data) {
                       received += data;
                       if (dropped < 0) {
                         dropped = std::system(drop.c_str());
                         silent_since = std::chrono::steady_clock::now();
                       }
                       return true;
                     },
                     {.timeout = 2s, .keepalive_idle = 1s, .keepalive_interval = 1s, .keepalive_probes = 2}) ||
        give_up.async_wait(nothrow_awaitable));
  }());
  CHECK(dropped == 0);
  CHECK(received == "line1\n");
  REQUIRE(ended.index() == 0);  // not the 20 s give-up: without keepalive it would wait for ever
  const auto& result = std::get<0>(ended);
  REQUIRE(result.has_error());
  CHECK(result.error().kind == http::ClientErrorKind::protocol);
  CHECK(result.error().message.find("timed out") != std::string::npos);
  const auto waited = std::chrono::steady_clock::now() - silent_since;
  CHECK(waited >= 2s);  // idle 1 s, then 2 probes 1 s apart: about 3 s
  CHECK(waited < 10s);
}

TEST_CASE("stream() bounds the head's wait and a refusal's body") {
  asio::io_context io;
  SECTION("no head in time") {
    auto script = answering({}, true);
    const auto endpoint = serve_tcp(io, script);
    const auto result = run_until_complete(
        io, http::stream(endpoint, get("/events"), {}, [](std::string_view) { return true; }, {.timeout = 150ms}));
    REQUIRE(result.has_error());
    CHECK(result.error().kind == http::ClientErrorKind::timeout);
  }
  SECTION("a refusal's body is handed over, then the call returns its head") {
    auto script = answering({{"HTTP/1.1 400 Bad Request\r\nContent-Length: 17\r\n\r\n{\"message\":\"no\"}\n"}});
    const auto endpoint = serve_tcp(io, script);
    std::string received;
    const auto result = run_until_complete(io, http::stream(endpoint, get("/events"), {}, collect_into(received)));
    REQUIRE(result.has_value());
    CHECK(result->result_int() == 400);
    CHECK(received == "{\"message\":\"no\"}\n");
  }
  SECTION("a refusal's endless body is cut at body_limit") {
    auto script = answering({{"HTTP/1.1 500 Oops\r\n\r\n" + std::string(5000, 'x')}}, true);
    const auto endpoint = serve_tcp(io, script);
    const auto result = run_until_complete(
        io, http::stream(endpoint, get("/events"), {}, [](std::string_view) { return true; }, {.body_limit = 1000}));
    REQUIRE(result.has_error());
    CHECK(result.error().kind == http::ClientErrorKind::too_large);
  }
}

TEST_CASE("stream() ends when the awaiting coroutine is cancelled") {
  asio::io_context io;
  auto script = answering({{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"}}, true);
  const auto endpoint = serve_tcp(io, script);
  std::string received;
  const auto started = std::chrono::steady_clock::now();
  const auto ended = director::test::cancelled_after(
      io, http::stream(endpoint, get("/events"), {}, collect_into(received)), 200ms);
  CHECK(std::chrono::steady_clock::now() - started < 2s);
  CHECK(received == "abc");
  REQUIRE(ended.has_value());  // the stream saw the cancellation and returned
  REQUIRE(ended->has_error());
  CHECK(ended->error().kind == http::ClientErrorKind::protocol);
}
