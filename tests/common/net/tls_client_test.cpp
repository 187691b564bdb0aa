// HTTPS in the HTTP client (common/src/net/tls_client.hpp) against an in-process TLS server on
// 127.0.0.1 with the certificates of tests/data/tls (made by its make-certs.sh: a CA, a server
// certificate it signed for IP 127.0.0.1 and DNS name localhost, and an unrelated CA). Like
// http_client_test.cpp, the server answers one connection with scripted raw bytes
// (scripted_server.hpp): the tests pin verification, the handshake's deadline, chunked streams
// and the limits over TLS.
#include "net/tls_client.hpp"

#include "net/awaitable.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>
#include <openssl/ssl.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../../server/asio_test_support.hpp"
#include "scripted_server.hpp"

namespace asio = boost::asio;
namespace ssl = asio::ssl;
namespace http = director::net::http;
using asio::ip::tcp;
using namespace std::chrono_literals;
using director::net::nothrow_awaitable;
using director::test::answering;
using director::test::collect_into;
using director::test::get;
using director::test::hold_open;
using director::test::play;
using director::test::run_until_complete;
using director::test::Script;

namespace {

const std::string certificates = std::string(DIRECTOR_TEST_DATA_DIR) + "/tls/";
const std::string trusted_ca = certificates + "ca.crt";
const std::string unrelated_ca = certificates + "other-ca.crt";

// How the server behaves on its one connection.
enum class Mode : std::uint8_t {
  tls,         // handshakes with server.crt and plays the script
  silent,      // accepts and never handshakes
  plain_http,  // answers the ClientHello with a plain HTTP 400 and closes
};

asio::awaitable<void> serve_tls(tcp::socket socket, std::shared_ptr<ssl::context> context,
                                std::shared_ptr<Script> script) {
  ssl::stream<tcp::socket> stream(std::move(socket), *context);
  auto [handshake_error] = co_await stream.async_handshake(ssl::stream_base::server, nothrow_awaitable);
  if (handshake_error) co_return;
  if (const char* name = SSL_get_servername(stream.native_handle(), TLSEXT_NAMETYPE_host_name)) {
    script->server_name = name;
  }
  co_await play(stream, *script);
  co_await stream.async_shutdown(nothrow_awaitable);
}

asio::awaitable<void> serve_one(std::shared_ptr<tcp::acceptor> acceptor, std::shared_ptr<ssl::context> context,
                                std::shared_ptr<Script> script, Mode mode) {
  auto [error, socket] = co_await acceptor->async_accept(nothrow_awaitable);
  if (error) co_return;
  switch (mode) {
    case Mode::tls:
      co_await serve_tls(std::move(socket), context, script);
      break;
    case Mode::silent:
      co_await hold_open(socket.get_executor());
      break;
    case Mode::plain_http: {
      std::array<char, 512> hello{};
      co_await socket.async_read_some(asio::buffer(hello), nothrow_awaitable);
      const std::string refusal = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      co_await asio::async_write(socket, asio::buffer(refusal), nothrow_awaitable);
      break;
    }
  }
}

// A server on 127.0.0.1 answering one connection with `script` as `mode` says; the client
// trusts `ca_file`.
http::TlsEndpoint serve(asio::io_context& io, std::shared_ptr<Script> script, Mode mode = Mode::tls,
                        std::string ca_file = trusted_ca) {
  auto context = std::make_shared<ssl::context>(ssl::context::tls_server);
  context->use_certificate_chain_file(certificates + "server.crt");
  context->use_private_key_file(certificates + "server.key", ssl::context::pem);
  auto acceptor = std::make_shared<tcp::acceptor>(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  asio::co_spawn(io, serve_one(acceptor, context, script, mode), director::net::log_if_thrown("test TLS server"));
  return {"127.0.0.1", acceptor->local_endpoint().port(), std::move(ca_file), ""};
}

const std::string ok_hello = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

}  // namespace

TEST_CASE("request() over TLS checks the certificate for an IP address and returns the response") {
  asio::io_context io;
  auto script = answering({{ok_hello}});
  const auto endpoint = serve(io, script);
  CHECK(http::to_string(endpoint) == "https://127.0.0.1:" + std::to_string(endpoint.port));
  const auto result = run_until_complete(io, http::request(endpoint, get("/api")));
  REQUIRE(result.has_value());
  CHECK(result->result_int() == 200);
  CHECK(result->body() == "hello");
  CHECK(script->request_head.starts_with("GET /api HTTP/1.1\r\n"));
  CHECK(script->request_head.find("Host: 127.0.0.1") != std::string::npos);
  CHECK(script->request_head.find("Connection: close") != std::string::npos);
  CHECK(script->server_name.empty());  // no SNI for an address
}

TEST_CASE("request() over TLS checks a DNS name and sends it as SNI and Host") {
  asio::io_context io;
  auto script = answering({{ok_hello}});
  auto endpoint = serve(io, script);
  SECTION("host") { endpoint.host = "localhost"; }
  SECTION("server_name") { endpoint.server_name = "localhost"; }
  const auto result = run_until_complete(io, http::request(endpoint, get("/")));
  REQUIRE(result.has_value());
  CHECK(result->body() == "hello");
  CHECK(script->server_name == "localhost");
  CHECK(script->request_head.find("Host: localhost") != std::string::npos);
}

TEST_CASE("stream() over TLS hands each chunk over as it arrives, without a deadline after the head") {
  asio::io_context io;
  auto script = answering({{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"},
                           {"6\r\nline1\n\r\n", 50ms},
                           {"6\r\nline2\n\r\n", 300ms},  // later than the head's deadline
                           {"6\r\nline3\n\r\n", 50ms},
                           {"0\r\n\r\n", 50ms}});
  const auto endpoint = serve(io, script);
  unsigned head_status = 0;
  std::vector<std::string> pieces;
  const auto result = run_until_complete(
      io, http::stream(
              endpoint, get("/api/v1/pods?watch=1"), [&](const http::StreamHead& head) { head_status = head.result_int(); },
              [&](std::string_view data) {
                CHECK(head_status == 200);
                pieces.emplace_back(data);
                return true;
              },
              {.timeout = 200ms}));
  REQUIRE(result.has_value());
  CHECK(result->result_int() == 200);
  CHECK(pieces == std::vector<std::string>{"line1\n", "line2\n", "line3\n"});
}

TEST_CASE("a server TLS cannot trust is a tls error naming the endpoint and the reason") {
  asio::io_context io;
  auto script = answering({{ok_hello}});
  SECTION("a certificate of an unrelated CA") {
    const auto endpoint = serve(io, script, Mode::tls, unrelated_ca);
    const auto result = run_until_complete(io, http::request(endpoint, get("/")));
    REQUIRE(result.has_error());
    CHECK(result.error().kind == http::ClientErrorKind::tls);
    CHECK(result.error().message.find(http::to_string(endpoint)) != std::string::npos);
    CHECK(result.error().message.find("certificate verify failed") != std::string::npos);
    CHECK(script->request_head.empty());  // nothing was sent
  }
  SECTION("a certificate for another name") {
    auto endpoint = serve(io, script);
    endpoint.server_name = "kubernetes.default.svc";
    const auto result = run_until_complete(io, http::request(endpoint, get("/")));
    REQUIRE(result.has_error());
    CHECK(result.error().kind == http::ClientErrorKind::tls);
    CHECK(result.error().message.find("hostname mismatch") != std::string::npos);
    CHECK(script->request_head.empty());
  }
  SECTION("a stream to a certificate for another address") {
    auto endpoint = serve(io, script);
    endpoint.server_name = "127.0.0.2";
    const auto result = run_until_complete(
        io, http::stream(endpoint, get("/"), {}, [](std::string_view) { return true; }));
    REQUIRE(result.has_error());
    CHECK(result.error().kind == http::ClientErrorKind::tls);
    CHECK(result.error().message.find("IP address mismatch") != std::string::npos);
  }
  SECTION("a CA file that cannot be read") {
    const auto endpoint = serve(io, script, Mode::tls, certificates + "no-such-ca.crt");
    const auto result = run_until_complete(io, http::request(endpoint, get("/")));
    REQUIRE(result.has_error());
    CHECK(result.error().kind == http::ClientErrorKind::tls);
    CHECK(result.error().message.find("no-such-ca.crt") != std::string::npos);
  }
}

TEST_CASE("a server that does not speak TLS is a tls error, a silent one a timeout") {
  asio::io_context io;
  SECTION("plain HTTP") {
    const auto endpoint = serve(io, answering({}), Mode::plain_http);
    const auto result = run_until_complete(io, http::request(endpoint, get("/")));
    REQUIRE(result.has_error());
    CHECK(result.error().kind == http::ClientErrorKind::tls);
    CHECK(result.error().message.find(http::to_string(endpoint)) != std::string::npos);
  }
  SECTION("accepts and never handshakes: request()") {
    const auto endpoint = serve(io, answering({}), Mode::silent);
    const auto started = std::chrono::steady_clock::now();
    const auto result = run_until_complete(io, http::request(endpoint, get("/"), {.timeout = 200ms}));
    const auto took = std::chrono::steady_clock::now() - started;
    REQUIRE(result.has_error());
    CHECK(result.error().kind == http::ClientErrorKind::timeout);
    CHECK(result.error().message.find("within 200 ms") != std::string::npos);
    CHECK(took >= 190ms);
    CHECK(took < 2s);
  }
  SECTION("accepts and never handshakes: stream()") {
    const auto endpoint = serve(io, answering({}), Mode::silent);
    const auto result = run_until_complete(
        io, http::stream(endpoint, get("/"), {}, [](std::string_view) { return true; }, {.timeout = 200ms}));
    REQUIRE(result.has_error());
    CHECK(result.error().kind == http::ClientErrorKind::timeout);
  }
}

TEST_CASE("the head and body limits apply over TLS") {
  asio::io_context io;
  SECTION("request() body") {
    const auto endpoint =
        serve(io, answering({{"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + std::string(100, 'x')}}));
    const auto result = run_until_complete(io, http::request(endpoint, get("/"), {.body_limit = 99}));
    REQUIRE(result.has_error());
    CHECK(result.error().kind == http::ClientErrorKind::too_large);
  }
  SECTION("request() head") {
    const auto endpoint = serve(
        io, answering({{"HTTP/1.1 200 OK\r\nX-Big: " + std::string(20000, 'x') + "\r\nContent-Length: 0\r\n\r\n"}}));
    const auto result = run_until_complete(io, http::request(endpoint, get("/")));
    REQUIRE(result.has_error());
    CHECK(result.error().kind == http::ClientErrorKind::too_large);
  }
  SECTION("stream() head") {
    const auto endpoint = serve(
        io, answering({{"HTTP/1.1 200 OK\r\nX-Big: " + std::string(20000, 'x') + "\r\n\r\n"}}, true));
    const auto result = run_until_complete(
        io, http::stream(endpoint, get("/"), {}, [](std::string_view) { return true; }));
    REQUIRE(result.has_error());
    CHECK(result.error().kind == http::ClientErrorKind::too_large);
  }
  SECTION("a refusal's endless body in stream()") {
    const auto endpoint = serve(io, answering({{"HTTP/1.1 500 Oops\r\n\r\n" + std::string(5000, 'x')}}, true));
    const auto result = run_until_complete(
        io, http::stream(endpoint, get("/"), {}, [](std::string_view) { return true; }, {.body_limit = 1000}));
    REQUIRE(result.has_error());
    CHECK(result.error().kind == http::ClientErrorKind::too_large);
  }
}

TEST_CASE("stream() over TLS ends when the awaiting coroutine is cancelled") {
  asio::io_context io;
  const auto endpoint = serve(io, answering({{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"}}, true));
  std::string received;
  const auto started = std::chrono::steady_clock::now();
  const auto ended = director::test::cancelled_after(
      io, http::stream(endpoint, get("/api/v1/pods?watch=1"), {}, collect_into(received)), 200ms);
  CHECK(std::chrono::steady_clock::now() - started < 2s);
  CHECK(received == "abc");
  REQUIRE(ended.has_value());  // the stream saw the cancellation and returned
  REQUIRE(ended->has_error());
  CHECK(ended->error().kind == http::ClientErrorKind::protocol);
}
