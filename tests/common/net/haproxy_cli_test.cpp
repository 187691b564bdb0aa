// net::haproxy_command against a real HAProxy (haproxy_fixture.hpp: 2.6 and 3.2 when present),
// and its failures against sockets that do not answer as HAProxy does.
#include "net/haproxy_cli.hpp"

#include "haproxy_fixture.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <catch2/catch.hpp>

#include <chrono>
#include <exception>
#include <optional>
#include <string>

using namespace std::chrono_literals;
using director::net::HaproxyAnswer;
using director::net::HaproxyCliErrorKind;

namespace {

// Runs one haproxy_command to completion on a fresh io_context.
HaproxyAnswer run_command(std::string socket, std::string command, std::size_t max_bytes = 64 * 1024,
                          std::chrono::milliseconds timeout = 2s) {
  boost::asio::io_context io;
  std::optional<HaproxyAnswer> answer;
  boost::asio::co_spawn(io, director::net::haproxy_command(std::move(socket), std::move(command), max_bytes, timeout),
                        [&](const std::exception_ptr& thrown, HaproxyAnswer result) {
                          if (thrown) std::rethrow_exception(thrown);
                          answer = std::move(result);
                        });
  io.run();
  REQUIRE(answer.has_value());
  return std::move(*answer);
}

std::vector<director::test::HaproxyVersion> versions_or_skip() {
  auto versions = director::test::haproxy_versions();
  if (versions.empty()) WARN("skipped: HAProxy is not installed (tools/install-deps.sh installs it)");
  return versions;
}

}  // namespace

TEST_CASE("haproxy_command sends a command to HAProxy's stats socket and returns its answer", "[haproxy_cli]") {
  for (const auto& version : versions_or_skip()) {
    INFO("HAProxy " << version.name);
    director::test::Haproxy haproxy({.executable = version.executable, .tcp_socket = true});
    haproxy.store("alice");
    haproxy.store("bob");
    // Over a unix socket and over TCP.
    for (const auto& socket : {haproxy.socket(), haproxy.tcp_socket()}) {
      INFO("socket " << socket);
      const auto answer = run_command(socket, "show table\n");
      REQUIRE(answer.has_value());
      CHECK(answer->starts_with("# table: fast_path, type: string"));
    }
    // A key HAProxy does not hold: an empty line, as for one it holds.
    auto answer = run_command(haproxy.socket(), "clear table fast_path key carol\n");
    REQUIRE(answer.has_value());
    CHECK(*answer == "\n");
    CHECK(haproxy.keys().size() == 2);
    // Several commands on one line: each answers an empty line when it succeeds.
    answer = run_command(haproxy.socket(), "clear table fast_path key alice;clear table fast_path key bob\n");
    REQUIRE(answer.has_value());
    CHECK(*answer == "\n\n");
    CHECK(haproxy.keys().empty());
    // A table HAProxy does not have: its error text, which first_answer_line reads.
    answer = run_command(haproxy.socket(), "clear table nosuch key alice\n");
    REQUIRE(answer.has_value());
    CHECK(director::net::first_answer_line(*answer) == "No such table");
    // An answer larger than the limit is an error.
    answer = run_command(haproxy.socket(), "help\n", 100);
    REQUIRE_FALSE(answer.has_value());
    CHECK(answer.error().kind == HaproxyCliErrorKind::too_large);
  }
}

TEST_CASE("HAProxy runs only the first line of a connection (3.x), every line (2.6)", "[haproxy_cli]") {
  // Why haproxy_command's contract says "send one line": measured, not assumed.
  for (const auto& version : versions_or_skip()) {
    INFO("HAProxy " << version.name);
    director::test::Haproxy haproxy({.executable = version.executable});
    haproxy.store("alice");
    haproxy.store("bob");
    const auto answer = run_command(haproxy.socket(), "clear table fast_path key alice\nclear table fast_path key bob\n");
    REQUIRE(answer.has_value());
    CHECK(haproxy.keys().size() == (version.name == "2.6" ? 0U : 1U));
  }
}

TEST_CASE("haproxy_command reports failures as values", "[haproxy_cli]") {
  SECTION("not a stats socket") {
    const auto answer = run_command("relative.sock", "show info\n");
    REQUIRE_FALSE(answer.has_value());
    CHECK(answer.error().kind == HaproxyCliErrorKind::bad_socket);
  }
  SECTION("a DNS name: never a stats socket (this function connects to one address)") {
    const auto answer = run_command("localhost:9999", "show info\n");
    REQUIRE_FALSE(answer.has_value());
    CHECK(answer.error().kind == HaproxyCliErrorKind::bad_socket);
    CHECK(answer.error().message == "not a unix socket path or IP:PORT: localhost:9999");
  }
  SECTION("nothing listens") {
    const auto answer = run_command("/nonexistent/haproxy.sock", "show info\n");
    REQUIRE_FALSE(answer.has_value());
    CHECK(answer.error().kind == HaproxyCliErrorKind::connect);
    CHECK(answer.error().message.starts_with("cannot connect: "));
  }
  SECTION("a socket that accepts and never answers: the deadline") {
    char pattern[] = "/tmp/director-cli-test-XXXXXX";
    REQUIRE(::mkdtemp(pattern) != nullptr);
    const std::string path = std::string(pattern) + "/silent.sock";
    boost::asio::io_context listener_io;
    boost::asio::local::stream_protocol::acceptor acceptor(listener_io, boost::asio::local::stream_protocol::endpoint(path));
    // The kernel completes the connection from the backlog; nobody ever reads or answers.
    const auto started = std::chrono::steady_clock::now();
    const auto answer = run_command(path, "show info\n", 1024, 200ms);
    const auto took = std::chrono::steady_clock::now() - started;
    REQUIRE_FALSE(answer.has_value());
    CHECK(answer.error().kind == HaproxyCliErrorKind::timeout);
    CHECK(took >= 200ms);
    CHECK(took < 2s);
    std::filesystem::remove_all(pattern);
  }
}

TEST_CASE("first_answer_line: the first line with text, bounded", "[haproxy_cli]") {
  CHECK(director::net::first_answer_line("\n\n") == "");
  CHECK(director::net::first_answer_line("") == "");
  CHECK(director::net::first_answer_line("\nNo such table\n\n") == "No such table");
  CHECK(director::net::first_answer_line("Permission denied\r\n") == "Permission denied");
  CHECK(director::net::first_answer_line(std::string(300, 'x')).size() == 200);
}
