// DockerRuntime (spawner/src/runtime/docker_runtime.hpp) against a real Podman API service:
// tools/podman.py starts it for ctest (fixture spawner_runtime_podman) and names its socket in
// DIRECTOR_TEST_PODMAN_SOCKET; the image is busybox-static (localhost/director-test-busybox).
// Containers use network host (serving on 127.0.3.7 only) or none. Without podman installed
// these tests say "skipped: ..." and pass (ctest reports them skipped).
#include "runtime/docker_runtime.hpp"

#include "net/awaitable.hpp"
#include "net/http_client.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../../server/asio_test_support.hpp"

namespace asio = boost::asio;
namespace core = director::spawner::core;
namespace http = director::net::http;
using director::spawner::runtime::DockerRuntime;
using director::spawner::runtime::DockerRuntimeSettings;
using director::test::run_until_complete;
using Json = nlohmann::json;
using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;

namespace {

// Whose container a start is for: Docker ignores it (create made the container). Named: a
// braced temporary in a co_await expression is destroyed too early by GCC 12.
const core::UserIdentity anyone;

constexpr const char* test_image = "localhost/director-test-busybox:latest";

// The fixture's socket, or nullopt (with the reason shown) when there is no service.
std::optional<std::string> podman_socket() {
  const char* socket = std::getenv("DIRECTOR_TEST_PODMAN_SOCKET");
  const char* skipped = std::getenv("DIRECTOR_TEST_PODMAN_SKIPPED");
  if (skipped != nullptr && *skipped != '\0') {
    WARN("skipped: " << skipped);
    return std::nullopt;
  }
  if (socket == nullptr || !std::filesystem::exists(socket)) {
    FAIL("no Podman service: run these tests through ctest (fixture spawner_runtime_podman), or set "
         "DIRECTOR_TEST_PODMAN_SOCKET to the socket of `tools/podman.py serve`");
  }
  return std::string(socket);
}

#define REQUIRE_PODMAN(socket)            \
  const auto socket = podman_socket();    \
  if (!socket) return

DockerRuntimeSettings settings_for(const std::string& socket) {
  DockerRuntimeSettings settings;
  settings.endpoint = http::UnixEndpoint{socket};
  settings.timeout = 20s;
  settings.pull_timeout = 30s;
  return settings;
}

// A spec as core::render makes it: managed labels, name vscode-<label>.
core::ContainerSpec spec_for(const std::string& label, std::vector<std::string> command, std::string network = "none") {
  core::ContainerSpec spec;
  spec.name = "vscode-" + label;
  spec.image = test_image;
  spec.command = std::move(command);
  spec.environment = {"DIRECTOR_USER=" + label};
  spec.labels = {{std::string(core::managed_label), "true"},
                 {std::string(core::label_label), label},
                 {std::string(core::user_label), label}};
  spec.network = std::move(network);
  return spec;
}

// One call to the API outside DockerRuntime (what the test checks or prepares by hand).
asio::awaitable<http::ClientResponse> raw(const std::string& socket, boost::beast::http::verb method,
                                          std::string target, std::string body = {}) {
  http::ClientRequest request(method, target, 11);
  if (!body.empty()) {
    request.set(boost::beast::http::field::content_type, "application/json");
    request.body() = std::move(body);
  }
  // Named, not a temporary in the co_await: GCC 12 destroys such a temporary twice.
  const http::ClientEndpoint endpoint = http::UnixEndpoint{socket};
  auto response = co_await http::request(endpoint, std::move(request), {.timeout = 20s});
  REQUIRE(response.has_value());
  co_return std::move(*response);
}

asio::awaitable<void> sleep_for(std::chrono::milliseconds duration) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  co_await timer.async_wait(director::net::nothrow_awaitable);
}

// A create body without the project's labels (GCC 12 cannot have it built inside a co_await).
std::string unmanaged_body() {
  return Json{{"Image", test_image}, {"Cmd", {"true"}}, {"HostConfig", {{"NetworkMode", "none"}}}}.dump();
}

// Removes what a previous, interrupted run left under `name`.
asio::awaitable<void> remove_leftover(const std::string& socket, const std::string& name) {
  co_await raw(socket, boost::beast::http::verb::delete_, "/v1.41/containers/" + name + "?force=1");
}

}  // namespace

TEST_CASE("a runtime that does not listen is unavailable, naming where it looked") {
  asio::io_context io;
  DockerRuntime runtime({.endpoint = http::UnixEndpoint{"/nonexistent/podman.sock"}, .timeout = 2s});
  const auto pinged = run_until_complete(io, runtime.ping());
  REQUIRE(pinged.has_error());
  CHECK(pinged.error().error == core::CallError::unavailable);
  CHECK(pinged.error().http_status == 0);
  CHECK(pinged.error().message.find("unix:///nonexistent/podman.sock") != std::string::npos);
  // Any call pings first, and fails the same way.
  const auto listed = run_until_complete(io, runtime.list_managed());
  REQUIRE(listed.has_error());
  CHECK(listed.error().error == core::CallError::unavailable);
}

namespace {

// A loopback "daemon" answering every connection's request with `answer` (for versions no
// runtime here reports).
asio::awaitable<void> answer_each(std::shared_ptr<asio::ip::tcp::acceptor> acceptor, std::string answer) {
  for (;;) {
    auto [error, socket] = co_await acceptor->async_accept(director::net::nothrow_awaitable);
    if (error) co_return;
    std::string request;
    co_await asio::async_read_until(socket, asio::dynamic_buffer(request, 65536), "\r\n\r\n",
                                    director::net::nothrow_awaitable);
    co_await asio::async_write(socket, asio::buffer(answer), director::net::nothrow_awaitable);
  }
}

http::TcpEndpoint daemon_answering(asio::io_context& io, std::string answer) {
  auto acceptor = std::make_shared<asio::ip::tcp::acceptor>(
      io, asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  asio::co_spawn(io, answer_each(acceptor, std::move(answer)), director::net::log_if_thrown("test daemon"));
  return {"127.0.0.1", acceptor->local_endpoint().port()};
}

std::string ping_answer(std::string_view version_header) {
  return "HTTP/1.1 200 OK\r\n" + std::string(version_header) + "Content-Length: 2\r\n\r\nOK";
}

}  // namespace

TEST_CASE("ping takes 1.44 from a newer daemon, and refuses one older than 1.41 or without a version") {
  asio::io_context io;
  SECTION("Docker 29 (1.52)") {
    DockerRuntime runtime({.endpoint = daemon_answering(io, ping_answer("Api-Version: 1.52\r\n")), .timeout = 2s});
    const auto info = run_until_complete(io, runtime.ping());
    REQUIRE(info.has_value());
    CHECK(info->api_version == "1.44");
    CHECK(info->name == "Docker Engine API 1.52");
  }
  SECTION("1.40") {
    DockerRuntime runtime({.endpoint = daemon_answering(io, ping_answer("Api-Version: 1.40\r\n")), .timeout = 2s});
    const auto info = run_until_complete(io, runtime.ping());
    REQUIRE(info.has_error());
    CHECK(info.error().error == core::CallError::refused);
    CHECK(info.error().message.find("speaks Docker API 1.40; director-spawner needs 1.41 or later") != std::string::npos);
    CHECK(runtime.api_version().empty());
  }
  SECTION("no Api-Version header") {
    DockerRuntime runtime({.endpoint = daemon_answering(io, ping_answer("")), .timeout = 2s});
    const auto info = run_until_complete(io, runtime.ping());
    REQUIRE(info.has_error());
    CHECK(info.error().message.find("(no Api-Version header)") != std::string::npos);
  }
}

TEST_CASE("ping negotiates Podman 4.3's API version 1.41") {
  REQUIRE_PODMAN(socket);
  asio::io_context io;
  DockerRuntime runtime(settings_for(*socket));
  const auto info = run_until_complete(io, runtime.ping());
  REQUIRE(info.has_value());
  CHECK(info->api_version == "1.41");
  CHECK(runtime.api_version() == "1.41");
  CHECK(info->name.starts_with("Podman 4."));
  CHECK(info->name.find("(Docker API 1.41)") != std::string::npos);
}

TEST_CASE("a managed container's life: create, start, inspect, logs, list, stop, kill, remove") {
  REQUIRE_PODMAN(socket);
  asio::io_context io;
  DockerRuntime runtime(settings_for(*socket));
  run_until_complete(io, [&]() -> asio::awaitable<void> {
    co_await remove_leftover(*socket, "vscode-life");
    // busybox httpd on the host's 127.0.3.7 (network host), answering from /www.
    auto spec = spec_for("life",
                         {"sh", "-c", "echo hello from $DIRECTOR_USER; echo to stderr >&2; "
                                      "exec httpd -f -p 127.0.3.7:18999 -h /www"},
                         "host");
    spec.volume_name = "director-home-life";
    spec.volume_mount = "/data";
    spec.memory_bytes = 64ULL << 20;
    spec.nano_cpus = 500'000'000;
    spec.pids_limit = 64;
    spec.health_check.command = {"wget -q -O /dev/null http://127.0.3.7:18999/"};
    spec.health_check.interval = 1s;
    spec.health_check.retries = 2;

    const auto id = co_await runtime.create(spec);
    REQUIRE(id.has_value());
    CHECK(id->size() == 64);

    auto inspected = co_await runtime.inspect("vscode-life");
    REQUIRE(inspected.has_value());
    REQUIRE(inspected->has_value());
    CHECK((*inspected)->id == *id);
    CHECK((*inspected)->managed);
    CHECK((*inspected)->label == "life");
    CHECK((*inspected)->state == core::ContainerState::created);

    // What Podman stored of the template.
    const auto stored = Json::parse((co_await raw(*socket, boost::beast::http::verb::get, "/v1.41/containers/vscode-life/json")).body());
    CHECK(stored["HostConfig"]["Memory"] == 64LL << 20);
    CHECK(stored["HostConfig"]["NanoCpus"] == 500'000'000);
    CHECK(stored["HostConfig"]["PidsLimit"] == 64);
    CHECK(stored["HostConfig"]["NetworkMode"] == "host");
    CHECK(stored["Config"]["Healthcheck"]["Test"] == Json{"CMD-SHELL", "wget -q -O /dev/null http://127.0.3.7:18999/"});
    CHECK(stored["Config"]["Healthcheck"]["Interval"] == 1'000'000'000LL);
    CHECK(stored["Mounts"][0]["Name"] == "director-home-life");
    CHECK(stored["Mounts"][0]["Destination"] == "/data");
    const auto volume = Json::parse((co_await raw(*socket, boost::beast::http::verb::get, "/v1.41/volumes/director-home-life")).body());
    CHECK(volume["Labels"]["io.container-director.managed"] == "true");
    CHECK(volume["Labels"]["io.container-director.label"] == "life");

    REQUIRE((co_await runtime.start(*id, anyone)).has_value());
    REQUIRE((co_await runtime.start(*id, anyone)).has_value());  // already running: fine

    // It serves on 127.0.3.7 from the host's network.
    std::optional<http::ClientResponse> page;
    const http::ClientEndpoint served = http::TcpEndpoint{"127.0.3.7", 18999};
    const http::ClientRequest get_page(boost::beast::http::verb::get, "/", 11);
    for (int attempt = 0; attempt < 100 && !page; ++attempt) {
      auto answer = co_await http::request(served, get_page, {.timeout = 1s});
      if (answer) page = std::move(*answer);
      else co_await sleep_for(50ms);
    }
    REQUIRE(page);
    CHECK(page->body() == "director test container\n");

    inspected = co_await runtime.inspect(*id);
    REQUIRE(inspected.has_value());
    CHECK((*inspected)->state == core::ContainerState::running);

    const auto output = co_await runtime.logs(*id, 10, 4096);
    REQUIRE(output.has_value());
    CHECK(*output == "hello from life\nto stderr\n");
    const auto last = co_await runtime.logs(*id, 1, 4096);
    REQUIRE(last.has_value());
    CHECK(*last == "to stderr\n");
    const auto cut = co_await runtime.logs(*id, 10, 5);
    REQUIRE(cut.has_value());
    CHECK(*cut == "derr\n");  // the last max_bytes

    const auto listed = co_await runtime.list_managed();
    REQUIRE(listed.has_value());
    bool found = false;
    for (const auto& row : *listed) {
      CHECK(row.managed);
      if (row.id == *id) {
        found = true;
        CHECK(row.name == "vscode-life");
        CHECK(row.state == core::ContainerState::running);
      }
    }
    CHECK(found);

    // Stop: httpd as PID 1 ignores SIGTERM, so the grace period ends in SIGKILL (137).
    REQUIRE((co_await runtime.stop(*id, 1s)).has_value());
    inspected = co_await runtime.inspect(*id);
    CHECK((*inspected)->state == core::ContainerState::exited);
    CHECK((*inspected)->exit_code == 137);
    REQUIRE((co_await runtime.stop(*id, 1s)).has_value());  // already stopped: fine

    // Started again, then killed at once (grace 0).
    REQUIRE((co_await runtime.start(*id, anyone)).has_value());
    const auto kill_started = std::chrono::steady_clock::now();
    REQUIRE((co_await runtime.stop(*id, 0s)).has_value());
    CHECK(std::chrono::steady_clock::now() - kill_started < 5s);
    CHECK((*(co_await runtime.inspect(*id)))->state == core::ContainerState::exited);

    const auto removed = co_await runtime.remove(*id);
    INFO("remove: " << (removed ? std::string("ok") : removed.error().message));
    REQUIRE(removed.has_value());
    inspected = co_await runtime.inspect(*id);
    REQUIRE(inspected.has_value());
    CHECK_FALSE(inspected->has_value());
    const auto gone = co_await runtime.remove(*id);
    REQUIRE(gone.has_error());
    CHECK(gone.error().error == core::CallError::not_found);
    CHECK(gone.error().http_status == 404);
    // The volume stays.
    CHECK((co_await raw(*socket, boost::beast::http::verb::get, "/v1.41/volumes/director-home-life")).result_int() == 200);
    // A new container of that user finds the volume there (409 or "exists" is fine).
    const auto again = co_await runtime.create(spec);
    REQUIRE(again.has_value());
    const auto removed_again = co_await runtime.remove(*again);
    INFO("remove: " << (removed_again ? std::string("ok") : removed_again.error().message));
    REQUIRE(removed_again.has_value());
  }());
}

TEST_CASE("a missing image: create says image_missing, a pull fails as image_missing") {
  REQUIRE_PODMAN(socket);
  asio::io_context io;
  DockerRuntime runtime(settings_for(*socket));
  run_until_complete(io, [&]() -> asio::awaitable<void> {
    auto spec = spec_for("noimage", {"true"});
    spec.image = "localhost/director-no-such-image:1";
    const auto created = co_await runtime.create(spec);
    REQUIRE(created.has_error());
    CHECK(created.error().error == core::CallError::image_missing);
    CHECK(created.error().http_status == 404);
    CHECK(created.error().message.find("localhost/director-no-such-image:1") != std::string::npos);

    const auto has_check = co_await runtime.image_has_health_check(spec.image);
    REQUIRE(has_check.has_error());
    CHECK(has_check.error().error == core::CallError::image_missing);
    const auto test_image_check = co_await runtime.image_has_health_check(test_image);
    REQUIRE(test_image_check.has_value());
    CHECK_FALSE(*test_image_check);

    // No registry is reachable from here (the only one tried is localhost:443, refused).
    const auto started = std::chrono::steady_clock::now();
    const auto pulled = co_await runtime.pull(spec.image);
    const auto took = std::chrono::steady_clock::now() - started;
    REQUIRE(pulled.has_error());
    CHECK(pulled.error().error == core::CallError::image_missing);
    CHECK(pulled.error().message.find("cannot pull localhost/director-no-such-image:1") == 0);
    CHECK(took < 25s);
    WARN("a pull of a missing image failed after "
         << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
  }());
}

TEST_CASE("a name taken by a container this project did not create is a conflict") {
  REQUIRE_PODMAN(socket);
  asio::io_context io;
  DockerRuntime runtime(settings_for(*socket));
  run_until_complete(io, [&]() -> asio::awaitable<void> {
    co_await remove_leftover(*socket, "vscode-taken");
    const auto foreign = co_await raw(*socket, boost::beast::http::verb::post, "/v1.41/containers/create?name=vscode-taken",
                                      unmanaged_body());
    REQUIRE(foreign.result_int() == 201);
    const auto spec = spec_for("taken", {"true"});
    const auto created = co_await runtime.create(spec);
    REQUIRE(created.has_error());
    CHECK(created.error().error == core::CallError::conflict);
    CHECK(created.error().message.find("already in use") != std::string::npos);
    const auto inspected = co_await runtime.inspect("vscode-taken");
    REQUIRE(inspected.has_value());
    REQUIRE(inspected->has_value());
    CHECK_FALSE((*inspected)->managed);
    const auto listed = co_await runtime.list_managed();
    REQUIRE(listed.has_value());
    for (const auto& row : *listed) CHECK(row.name != "vscode-taken");
    co_await remove_leftover(*socket, "vscode-taken");
  }());
}

namespace {

// What the watch test's two coroutines share.
struct Watched {
  bool subscribed = false;
  std::vector<core::ContainerEvent> events;
  std::optional<std::string> ended;  // why watch() returned, if it did
};

asio::awaitable<void> watch_into(DockerRuntime& runtime, Watched& watched, asio::steady_timer& subscribed_signal) {
  const auto ended = co_await runtime.watch(
      [&] {
        watched.subscribed = true;
        subscribed_signal.cancel();
      },
      [&](const core::ContainerEvent& event) { watched.events.push_back(event); });
  watched.ended = ended ? std::string("cleanly") : ended.error().message;
}

bool seen(const Watched& watched, core::EventKind kind) {
  return std::any_of(watched.events.begin(), watched.events.end(), [&](const auto& event) { return event.kind == kind; });
}

// Once subscribed: an unmanaged container runs, a managed one is created, started, checked,
// dies with 3 and is removed.
asio::awaitable<void> watched_scenario(DockerRuntime& runtime, const std::string& socket, Watched& watched,
                                       asio::steady_timer& subscribed_signal) {
  co_await subscribed_signal.async_wait(director::net::nothrow_awaitable);
  const auto foreign = co_await raw(socket, boost::beast::http::verb::post, "/v1.41/containers/create?name=unmanaged-watched",
                                    unmanaged_body());
  CHECK(foreign.result_int() == 201);
  co_await raw(socket, boost::beast::http::verb::post, "/v1.41/containers/unmanaged-watched/start");

  auto spec = spec_for("watched", {"sh", "-c", "sleep 1; exit 3"});
  spec.health_check.command = {"true"};
  const auto id = co_await runtime.create(spec);
  CHECK(id.has_value());
  CHECK((co_await runtime.start(spec.name, anyone)).has_value());
  // Podman here has no systemd to time health checks: run one through libpod's API.
  co_await raw(socket, boost::beast::http::verb::get, "/v4.0.0/libpod/containers/vscode-watched/healthcheck");
  for (int waited = 0; waited < 100 && !seen(watched, core::EventKind::died); ++waited) co_await sleep_for(100ms);
  co_await remove_leftover(socket, "vscode-watched");
  co_await remove_leftover(socket, "unmanaged-watched");
  co_await sleep_for(300ms);
}

}  // namespace

TEST_CASE("watch() reports subscription, then create, start, health and death of managed containers only") {
  REQUIRE_PODMAN(socket);
  asio::io_context io;
  DockerRuntime runtime(settings_for(*socket));
  Watched watched;
  run_until_complete(io, [&]() -> asio::awaitable<void> {
    co_await remove_leftover(*socket, "vscode-watched");
    co_await remove_leftover(*socket, "unmanaged-watched");
    asio::steady_timer subscribed_signal(co_await asio::this_coro::executor, std::chrono::steady_clock::time_point::max());
    // The scenario's end cancels watch(): cancelling the awaiting coroutine ends the stream.
    co_await (watch_into(runtime, watched, subscribed_signal) ||
              (watched_scenario(runtime, *socket, watched, subscribed_signal) || sleep_for(30s)));
  }());
  CHECK(watched.subscribed);
  // It ended only because the test cancelled it.
  INFO("watch() ended: " << watched.ended.value_or("not at all"));
  CHECK((!watched.ended || watched.ended->find("Operation canceled") != std::string::npos));
  for (const auto& event : watched.events) CHECK(event.label == "watched");
  CHECK(seen(watched, core::EventKind::created));
  CHECK(seen(watched, core::EventKind::started));
  CHECK(seen(watched, core::EventKind::health));
  CHECK(seen(watched, core::EventKind::destroyed));
  REQUIRE(seen(watched, core::EventKind::died));
  const auto died = std::find_if(watched.events.begin(), watched.events.end(),
                                 [](const auto& event) { return event.kind == core::EventKind::died; });
  CHECK(died->exit_code == 3);
}
