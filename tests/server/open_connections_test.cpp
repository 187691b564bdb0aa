// GET /connections (connections_endpoint, over read_open_connections) against real HAProxy 2.6
// and 3.2 (../common/net/haproxy_fixture.hpp): a request that stays open through HAProxy's
// tracking frontend is what an open WebSocket is to haproxy.cfg's user_connections table
// (track-sc1: conn_cur counts the user's streams in progress).
#include "server/http_endpoints.hpp"
#include "server/open_connections.hpp"

#include "../common/net/haproxy_fixture.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using director::server::OpenConnectionsSettings;
using director::test::Haproxy;
using Json = nlohmann::json;

namespace {

struct Reply {
  int status = 0;
  Json body;
};

// GET `target` of connections_endpoint with a reader of `settings` of its own (nothing kept from
// an earlier call), run to completion.
Reply get(const OpenConnectionsSettings& settings, const std::string& target = "/connections") {
  boost::asio::io_context io;
  const director::net::http::Request request(director::net::http::Method::get, target, 11);
  const auto reader = director::server::OpenConnectionsReader::create(settings);
  auto answer = boost::asio::co_spawn(io, director::server::connections_endpoint(*reader, request),
                                      boost::asio::use_future);
  io.run();
  const auto response = answer.get();
  return Reply{static_cast<int>(response.result_int()), Json::parse(response.body())};
}

// The open connections /connections lists: username -> open.
std::map<std::string, std::uint64_t> open_of(const Reply& reply) {
  std::map<std::string, std::uint64_t> open;
  for (const auto& row : reply.body["connections"]) open[row["user"].get<std::string>()] = row["open"].get<std::uint64_t>();
  return open;
}

// Polls /connections until `expected` (at most 5 s: HAProxy counts a closed stream down at once,
// but asynchronously to the client's close).
bool eventually(const OpenConnectionsSettings& settings, const std::map<std::string, std::uint64_t>& expected) {
  for (int i = 0; i < 500; ++i) {
    const auto reply = get(settings);
    if (reply.status == 200 && open_of(reply) == expected) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

}  // namespace

TEST_CASE("/connections: users with streams open through HAProxy, summed over its sockets, none once closed",
          "[connections]") {
  const auto versions = director::test::haproxy_versions();
  if (versions.empty()) WARN("skipped: HAProxy is not installed (tools/install-deps.sh installs it)");
  for (const auto& version : versions) {
    DYNAMIC_SECTION("HAProxy " << version.name) {
      Haproxy haproxy({.executable = version.executable, .tcp_socket = true, .tracking_frontend = true,
                       .connections_table = true});
      OpenConnectionsSettings settings;
      settings.sockets = {haproxy.socket()};

      auto nobody = get(settings);
      CHECK(nobody.status == 200);
      CHECK(nobody.body["sockets"] == Json::array({haproxy.socket()}));
      CHECK(nobody.body["table"] == "user_connections");
      CHECK(nobody.body["total"] == 0);
      CHECK(nobody.body["connections"] == Json::array());
      CHECK(nobody.body["next"].is_null());

      std::optional<Haproxy::TrackedRequest> alice(haproxy.track("alice"));
      auto bob_first = haproxy.track("bob");
      auto bob_second = haproxy.track("bob");
      CHECK(eventually(settings, {{"alice", 1}, {"bob", 2}}));

      // The same HAProxy on two sockets: each socket is read, and the counts summed.
      settings.sockets = {haproxy.socket(), haproxy.tcp_socket()};
      CHECK(eventually(settings, {{"alice", 2}, {"bob", 4}}));
      settings.sockets = {haproxy.socket()};

      alice.reset();  // closed: alice has no stream open any more (her entry stays, conn_cur 0)
      CHECK(eventually(settings, {{"bob", 2}}));
      CHECK(haproxy.command("show table user_connections\n").find("key=alice") != std::string::npos);
    }
  }
}

TEST_CASE("/connections: a socket that cannot be read makes it 503, naming the socket and why", "[connections]") {
  const auto versions = director::test::haproxy_versions();
  if (versions.empty()) WARN("skipped: HAProxy is not installed (tools/install-deps.sh installs it)");
  for (const auto& version : versions) {
    DYNAMIC_SECTION("HAProxy " << version.name) {
      Haproxy haproxy({.executable = version.executable,
                       .tracking_frontend = true,
                       .connections_table = true,
                       .user_level_socket = true});
      auto open = haproxy.track("alice");
      OpenConnectionsSettings settings;
      // Below level operator HAProxy prints the header, not the entries: no "no connections".
      settings.sockets = {haproxy.user_socket()};
      const auto user_level = get(settings);
      CHECK(user_level.status == 503);
      REQUIRE(user_level.body["unreadable"].size() == 1);
      CHECK_THAT(user_level.body["unreadable"][0]["reason"].get<std::string>(), Catch::Contains("level operator"));

      settings.sockets = {haproxy.socket(), "/nonexistent/haproxy.sock"};
      const auto unreachable = get(settings);
      CHECK(unreachable.status == 503);
      CHECK_THAT(unreachable.body["error"].get<std::string>(), Catch::Contains("cannot read HAProxy's open connections"));
      REQUIRE(unreachable.body["unreadable"].size() == 1);
      CHECK(unreachable.body["unreadable"][0]["socket"] == "/nonexistent/haproxy.sock");
      CHECK_THAT(unreachable.body["unreadable"][0]["reason"].get<std::string>(), Catch::Contains("cannot connect"));
      CHECK_FALSE(unreachable.body.contains("connections"));

      settings.sockets = {haproxy.socket()};
      settings.table = "no_such_table";
      const auto no_table = get(settings);
      CHECK(no_table.status == 503);
      CHECK_THAT(no_table.body["unreadable"][0]["reason"].get<std::string>(), Catch::Contains("no table no_such_table"));

      settings.table = "user_connections";
      haproxy.stop();
      const auto stopped = get(settings);
      CHECK(stopped.status == 503);
      CHECK(stopped.body["unreadable"][0]["socket"] == haproxy.socket());
    }
  }
}

TEST_CASE("/connections: without a socket it says it reads none (200, sockets [])", "[connections]") {
  const auto none = get(OpenConnectionsSettings{});
  CHECK(none.status == 200);
  CHECK(none.body["sockets"] == Json::array());
  CHECK(none.body["connections"] == Json::array());
}

namespace {

// A fake HAProxy runtime API on a unix socket: every connection reads the command line, gets
// `answer` and is closed (as HAProxy closes a non-interactive session). Held, it answers only
// once release() is called (or it is destroyed): tests order events without sleeping.
enum class Answer : std::uint8_t { at_once, held };

class CannedCli {
 public:
  explicit CannedCli(std::string answer, Answer when = Answer::at_once)
      : answer_(std::move(answer)), released_(when == Answer::at_once) {
    static std::atomic<int> made{0};
    path_ = std::filesystem::temp_directory_path() /
            ("canned-cli-" + std::to_string(::getpid()) + "-" + std::to_string(made++) + ".sock");
    ::unlink(path_.c_str());
    fd_ = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", path_.c_str());
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
    REQUIRE(::listen(fd_, 8) == 0);
    thread_ = std::thread([this] {
      for (;;) {
        const int client = ::accept(fd_, nullptr, nullptr);
        if (client < 0) return;
        char buffer[512];
        (void)::read(client, buffer, sizeof(buffer));
        ++accepted_;  // after the command: a test that sees it may cancel the client's wait
        {
          std::unique_lock lock(mutex_);
          release_.wait(lock, [this] { return released_; });
        }
        (void)::send(client, answer_.data(), answer_.size(), MSG_NOSIGNAL);  // the client may be gone
        ::close(client);
      }
    });
  }
  ~CannedCli() {
    release();
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
    ::unlink(path_.c_str());
  }
  std::string path() const { return path_.string(); }
  // Commands received so far (one a connection).
  int accepted() const { return accepted_.load(); }
  void release() {
    {
      const std::lock_guard lock(mutex_);
      released_ = true;
    }
    release_.notify_all();
  }

 private:
  std::string answer_;
  std::atomic<int> accepted_{0};
  std::mutex mutex_;
  std::condition_variable release_;
  bool released_;
  std::filesystem::path path_;
  int fd_ = -1;
  std::thread thread_;
};

}  // namespace

TEST_CASE("/connections: an answer that only looks complete is 503", "[connections]") {
  const std::string header = "# table: user_connections, type: string, size:102400, used:1\n";
  const std::string row = "0x55d0c8a7b0a0: key=alice use=1 exp=0 conn_cur=1\n";
  OpenConnectionsSettings settings;
  settings.timeout = 2000ms;
  SECTION("complete: 200") {
    CannedCli cli(header + row + "\n");
    settings.sockets = {cli.path()};
    const auto reply = get(settings);
    CHECK(reply.status == 200);
    CHECK(open_of(reply) == std::map<std::string, std::uint64_t>{{"alice", 1}});
  }
  SECTION("a row that does not parse") {
    CannedCli cli(header + row + "0x55d0c8a7b0b0: key=bob\\q use=1 exp=0 conn_cur=1\n\n");
    settings.sockets = {cli.path()};
    const auto reply = get(settings);
    CHECK(reply.status == 503);
    CHECK_THAT(reply.body["unreadable"][0]["reason"].get<std::string>(), Catch::Contains("did not parse"));
  }
  SECTION("no closing empty line") {
    CannedCli cli(header + row);
    settings.sockets = {cli.path()};
    const auto reply = get(settings);
    CHECK(reply.status == 503);
    CHECK_THAT(reply.body["unreadable"][0]["reason"].get<std::string>(), Catch::Contains("closing empty line"));
  }
}

namespace {

const std::string canned_table =
    "# table: user_connections, type: string, size:102400, used:1\n"
    "0x55d0c8a7b0a0: key=alice use=1 exp=0 conn_cur=1\n\n";

// A reader of `cli` alone.
std::shared_ptr<director::server::OpenConnectionsReader> reader_of(
    const CannedCli& cli, std::chrono::milliseconds reuse = director::server::OpenConnectionsReader::default_reuse) {
  OpenConnectionsSettings settings;
  settings.sockets = {cli.path()};
  return director::server::OpenConnectionsReader::create(settings, reuse);
}

// Runs `io` until `condition` holds, at most 10 s.
template <typename Condition>
bool run_until(boost::asio::io_context& io, Condition condition) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    io.restart();
    io.run_for(5ms);
  }
  return true;
}

// Requests of connections_endpoint through one reader, on one io_context; each may be cancelled
// (as the HTTP exchange's deadline cancels it).
struct Requests {
  boost::asio::io_context io;
  std::vector<std::optional<director::net::http::Response>> responses;
  std::vector<bool> ended;
  std::vector<std::unique_ptr<boost::asio::cancellation_signal>> cancels;

  void start(director::server::OpenConnectionsReader& reader) {
    const auto index = responses.size();
    responses.emplace_back();
    ended.push_back(false);
    cancels.push_back(std::make_unique<boost::asio::cancellation_signal>());
    boost::asio::co_spawn(
        io,
        [this, &reader]() -> boost::asio::awaitable<director::net::http::Response> {
          const director::net::http::Request request(director::net::http::Method::get, "/connections", 11);
          co_return co_await director::server::connections_endpoint(reader, request);
        },
        boost::asio::bind_cancellation_slot(cancels.back()->slot(),
                                            [this, index](std::exception_ptr thrown, director::net::http::Response response) {
                                              if (!thrown) responses[index] = std::move(response);
                                              ended[index] = true;
                                            }));
  }
  void cancel(std::size_t index) { cancels.at(index)->emit(boost::asio::cancellation_type::terminal); }
  bool all_ended() const { return std::all_of(ended.begin(), ended.end(), [](bool e) { return e; }); }
  int status(std::size_t index) const { return responses.at(index) ? static_cast<int>(responses[index]->result_int()) : 0; }
};

}  // namespace

TEST_CASE("/connections: concurrent requests share one read of HAProxy, kept for later ones", "[connections]") {
  CannedCli cli(canned_table, Answer::held);
  const auto reader = reader_of(cli, 60'000ms);
  Requests requests;
  for (int i = 0; i < 5; ++i) requests.start(*reader);
  REQUIRE(run_until(requests.io, [&] { return cli.accepted() == 1 && reader->waiting() == 5; }));
  cli.release();
  REQUIRE(run_until(requests.io, [&] { return requests.all_ended(); }));
  for (std::size_t i = 0; i < 5; ++i) {
    REQUIRE(requests.status(i) == 200);
    CHECK(requests.responses[i]->body() == requests.responses[0]->body());
  }
  CHECK(cli.accepted() == 1);
  requests.start(*reader);  // within `reuse` of the read's end: the same read
  REQUIRE(run_until(requests.io, [&] { return requests.all_ended(); }));
  CHECK(requests.status(5) == 200);
  CHECK(cli.accepted() == 1);
}

TEST_CASE("/connections: a read older than its reuse is made again", "[connections]") {
  CannedCli cli(canned_table);
  const auto reader = reader_of(cli, 0ms);
  Requests requests;
  requests.start(*reader);
  REQUIRE(run_until(requests.io, [&] { return requests.all_ended(); }));
  std::this_thread::sleep_for(5ms);
  requests.start(*reader);
  REQUIRE(run_until(requests.io, [&] { return requests.all_ended(); }));
  CHECK(requests.status(0) == 200);
  CHECK(requests.status(1) == 200);
  CHECK(cli.accepted() == 2);
}

TEST_CASE("/connections: a request that gives up stops waiting, the read goes on for the others", "[connections]") {
  CannedCli cli(canned_table, Answer::held);
  const auto reader = reader_of(cli);
  Requests requests;
  requests.start(*reader);  // starts the read
  REQUIRE(run_until(requests.io, [&] { return cli.accepted() == 1; }));
  requests.cancel(0);
  REQUIRE(run_until(requests.io, [&] { return requests.ended[0]; }));
  CHECK(reader->waiting() == 0);  // gone from the waiters
  requests.start(*reader);        // joins the read in progress
  REQUIRE(run_until(requests.io, [&] { return reader->waiting() == 1; }));
  cli.release();
  REQUIRE(run_until(requests.io, [&] { return requests.all_ended(); }));
  CHECK(requests.status(1) == 200);
  CHECK(cli.accepted() == 1);
}

TEST_CASE("read_open_connections: cancelled, it reads no further socket", "[connections]") {
  CannedCli slow(canned_table, Answer::held);
  CannedCli never(canned_table);
  OpenConnectionsSettings settings;
  settings.sockets = {slow.path(), never.path()};
  boost::asio::io_context io;
  boost::asio::cancellation_signal cancel;
  std::optional<director::server::OpenConnections> connections;
  boost::asio::co_spawn(io, director::server::read_open_connections(settings),
                        boost::asio::bind_cancellation_slot(
                            cancel.slot(), [&](std::exception_ptr, director::server::OpenConnections read) {
                              connections = std::move(read);
                            }));
  REQUIRE(run_until(io, [&] { return slow.accepted() == 1; }));
  cancel.emit(boost::asio::cancellation_type::terminal);
  slow.release();
  REQUIRE(run_until(io, [&] { return connections.has_value(); }));
  REQUIRE(connections->unreadable.size() == 2);
  CHECK(connections->unreadable[0].socket == slow.path());
  CHECK(connections->unreadable[1].socket == never.path());
  CHECK_THAT(connections->unreadable[1].reason, Catch::Contains("cancelled"));
  CHECK(never.accepted() == 0);
}

TEST_CASE("/connections: requests from several threads share one read", "[connections]") {
  // As in the agent: a multi-threaded io_context, each request on a strand of its own.
  CannedCli cli(canned_table, Answer::held);
  const auto reader = reader_of(cli, 60'000ms);
  boost::asio::io_context io(4);
  constexpr int requests = 12;
  std::atomic<int> answered_ok{0};
  for (int i = 0; i < requests; ++i) {
    boost::asio::co_spawn(
        boost::asio::make_strand(io),
        [&]() -> boost::asio::awaitable<void> {
          const director::net::http::Request request(director::net::http::Method::get, "/connections", 11);
          const auto response = co_await director::server::connections_endpoint(*reader, request);
          if (response.result_int() == 200) ++answered_ok;
        },
        boost::asio::detached);
  }
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) threads.emplace_back([&io] { io.run(); });
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (reader->waiting() < requests && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
  CHECK(reader->waiting() == requests);
  cli.release();
  for (auto& thread : threads) thread.join();
  CHECK(answered_ok.load() == requests);
  CHECK(cli.accepted() == 1);
}
