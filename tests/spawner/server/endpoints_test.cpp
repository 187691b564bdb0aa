// The endpoints as functions of a request, with SpawnService over a fake runtime (a fake is fine
// for a unit test of one class; end to end through HAProxy and Podman is tests/e2e's).
#include "server/endpoints.hpp"

#include "run_until.hpp"
#include "service_fixture.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/beast/http/field.hpp>
#include "net/http_client.hpp"
#include "net/awaitable.hpp"
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>

namespace {

using namespace director::spawner;
using director::net::http::Method;
using director::net::http::Request;
using director::net::http::Status;
using director::spawner::test::run_until;
using Json = nlohmann::json;
namespace http = boost::beast::http;

struct Fixture : test::ServiceFixture {
  config::Config configuration;
  server::EventFeed feed;
  std::unique_ptr<server::EventWatcher> watcher;
  director::net::http::Router pages;
  director::net::http::Router operators;

  explicit Fixture(std::chrono::milliseconds retry_after = std::chrono::milliseconds(0)) {
    configuration.container_port = settings.container_port;
    configuration.container_template = lifecycle.container_template;
    lifecycle.retry_after = retry_after;
    lifecycle.ready_timeout = std::chrono::milliseconds(2000);
    make_service();
    watcher = std::make_unique<server::EventWatcher>(io.get_executor(), runtime, *service, feed, metrics);
    pages = server::page_endpoints({configuration, *service, metrics, std::chrono::milliseconds(0)});
    operators = server::operator_endpoints({configuration, "test", *service, *watcher, feed, metrics});
  }
  ~Fixture() {
    watcher->stop();
    service->stop();
    test::run_for(io, std::chrono::milliseconds(20));
  }

  core::Phase phase() const { return service->view("alice").phase; }
};

// A request as HAProxy forwards a navigation of alice's.
Request navigation(std::string target = "/") {
  Request request{Method::get, target, 11};
  request.set("X-Forwarded-Preferred-Username", "alice");
  request.set("X-Director-Label", "alice");
  request.set("X-Director-Container-Host", "vscode-alice");
  request.set(http::field::accept, "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8");
  return request;
}

Request fetch(std::string target = "/api/data") {
  auto request = navigation(std::move(target));
  request.set(http::field::accept, "application/json");
  request.set("Sec-Fetch-Mode", "cors");
  request.set("Sec-Fetch-Dest", "empty");
  return request;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string metric_line(const metrics::Metrics& metrics, const std::string& series) {
  const auto text = metrics.serialize({});
  const auto at = text.find(series + " ");
  return at == std::string::npos ? std::string() : text.substr(at, text.find('\n', at) - at);
}

}  // namespace

TEST_CASE("a navigation wakes the container and gets the loading page, the next lands in it") {
  Fixture fixture;
  const auto response = fixture.pages.route(navigation("/projects/x"));
  CHECK(response.result() == Status::ok);
  CHECK(contains(response.body(), "Starting your container"));
  CHECK(response[http::field::cache_control] == "no-store");
  REQUIRE(run_until(fixture.io, [&] { return fixture.phase() == core::Phase::ready; }));
  CHECK(fixture.runtime.creates == 1);
  CHECK(metric_line(fixture.metrics, "director_spawner_pages_total{page=\"loading\"}") ==
        "director_spawner_pages_total{page=\"loading\"} 1");
}

TEST_CASE("requests without the director's headers are refused and wake nothing") {
  Fixture fixture;
  Request bare{Method::get, "/", 11};
  bare.set(http::field::accept, "text/html");
  CHECK(fixture.pages.route(bare).result() == Status::forbidden);

  auto two_names = navigation();
  two_names.insert("X-Forwarded-Preferred-Username", "mallory");
  CHECK(fixture.pages.route(two_names).result() == Status::forbidden);

  auto other_host = navigation();
  other_host.set("X-Director-Container-Host", "vscode-bob");
  CHECK(fixture.pages.route(other_host).result() == Status::forbidden);

  auto bad_label = navigation();
  bad_label.set("X-Director-Label", "../alice");
  bad_label.set("X-Director-Container-Host", "vscode-../alice");
  CHECK(fixture.pages.route(bad_label).result() == Status::forbidden);

  auto no_host = navigation();
  no_host.erase("X-Director-Container-Host");
  const auto refused = fixture.pages.route(no_host);
  CHECK(refused.result() == Status::forbidden);
  CHECK(refused["X-Director-Reason"] == "not-through-the-director");

  test::run_for(fixture.io, std::chrono::milliseconds(50));
  CHECK(fixture.runtime.inspects == 0);
  CHECK(metric_line(fixture.metrics, "director_spawner_wake_refused_total{kind=\"missing_identity\"}") ==
        "director_spawner_wake_refused_total{kind=\"missing_identity\"} 5");
}

TEST_CASE("without a label the director cannot place the user: 503, Retry-After, no wake") {
  Fixture fixture;
  // What HAProxy sends when the agent is down and the username is not a DNS label: neither the
  // label nor the container host (it sets both or none).
  auto request = navigation();
  request.erase("X-Director-Label");
  request.erase("X-Director-Container-Host");
  const auto response = fixture.pages.route(request);
  CHECK(response.result() == Status::service_unavailable);
  CHECK(response[http::field::retry_after] == "5");
  CHECK(response["X-Director-Reason"] == "no-label");
  test::run_for(fixture.io, std::chrono::milliseconds(50));
  CHECK(fixture.runtime.inspects == 0);
}

TEST_CASE("the wake policy refuses fetch, WebSocket and assets with 503 and wakes nothing") {
  Fixture fixture;
  const auto json = fixture.pages.route(fetch());
  CHECK(json.result() == Status::service_unavailable);
  CHECK(json[http::field::retry_after] == "5");
  CHECK(json["X-Director-Reason"] == "not-a-navigation");
  CHECK(Json::parse(json.body())["retry_after"] == 5);

  auto websocket = navigation("/socket");
  websocket.set(http::field::upgrade, "websocket");
  websocket.set(http::field::connection, "Upgrade");
  CHECK(fixture.pages.route(websocket).result() == Status::service_unavailable);

  auto script = navigation("/static/app.js");
  script.set(http::field::accept, "*/*");
  script.set("Sec-Fetch-Mode", "no-cors");
  script.set("Sec-Fetch-Dest", "script");
  const auto asset = fixture.pages.route(script);
  CHECK(asset.result() == Status::service_unavailable);
  CHECK(asset[http::field::content_type] == "text/html; charset=utf-8");

  auto favicon = navigation("/favicon.ico");
  favicon.set(http::field::accept, "image/avif,image/webp,*/*");
  CHECK(fixture.pages.route(favicon).result() == Status::service_unavailable);

  auto monitor = navigation("/");
  monitor.set(http::field::accept, "*/*");
  CHECK(fixture.pages.route(monitor).result() == Status::service_unavailable);

  test::run_for(fixture.io, std::chrono::milliseconds(50));
  CHECK(fixture.runtime.inspects == 0);
  CHECK(fixture.runtime.creates == 0);
  CHECK(metric_line(fixture.metrics, "director_spawner_wake_refused_total{kind=\"xhr\"}").ends_with(" 1"));
  CHECK(metric_line(fixture.metrics, "director_spawner_wake_refused_total{kind=\"websocket\"}").ends_with(" 1"));
  CHECK(metric_line(fixture.metrics, "director_spawner_wake_refused_total{kind=\"asset\"}").ends_with(" 2"));
  CHECK(metric_line(fixture.metrics, "director_spawner_wake_refused_total{kind=\"not_navigation\"}").ends_with(" 1"));
}

TEST_CASE("fetch metadata other than Mode and Dest makes Accept alone not a navigation, as in HAProxy") {
  auto site_only = navigation();
  site_only.set("sec-fetch-site", "same-origin");
  CHECK(server::request_signals(site_only).other_sec_fetch);
  CHECK_FALSE(server::request_signals(navigation()).other_sec_fetch);
  auto mode_and_dest = navigation();
  mode_and_dest.set("Sec-Fetch-Mode", "navigate");
  mode_and_dest.set("Sec-Fetch-Dest", "document");
  CHECK_FALSE(server::request_signals(mode_and_dest).other_sec_fetch);
  auto bare_prefix = navigation();
  bare_prefix.set("Sec-Fetch-", "x");
  CHECK(server::request_signals(bare_prefix).other_sec_fetch);  // haproxy.cfg: (^|;)sec-fetch-

  Fixture fixture;
  CHECK(fixture.pages.route(site_only).result() == Status::service_unavailable);
  test::run_for(fixture.io, std::chrono::milliseconds(50));
  CHECK(fixture.runtime.inspects == 0);
}

TEST_CASE("the status endpoint reports the phase and never wakes") {
  Fixture fixture;
  const auto before = fixture.pages.route(fetch("/.container-director/status"));
  CHECK(before.result() == Status::ok);
  CHECK(Json::parse(before.body())["phase"] == "absent");
  test::run_for(fixture.io, std::chrono::milliseconds(50));
  CHECK(fixture.runtime.inspects == 0);

  fixture.pages.route(navigation());
  REQUIRE(run_until(fixture.io, [&] { return fixture.phase() == core::Phase::ready; }));
  const auto after = Json::parse(fixture.pages.route(fetch("/.container-director/status")).body());
  CHECK(after["phase"] == "ready");
  CHECK(after["message"].is_string());

  CHECK(fixture.pages.route(navigation("/.container-director/other")).result() == Status::not_found);
}

TEST_CASE("a failed user gets the failure page of its kind, and a retry after retry_after") {
  Fixture fixture(std::chrono::milliseconds(300));
  fixture.runtime.create_error = runtime::RuntimeError{core::CallError::refused, 400, "invalid memory limit <1>"};
  fixture.pages.route(navigation());
  REQUIRE(run_until(fixture.io, [&] { return fixture.phase() == core::Phase::failed; }));
  const auto response = fixture.pages.route(navigation());
  CHECK(response.result() == Status::bad_gateway);
  CHECK(response["X-Director-Reason"] == "limits_refused");
  CHECK(contains(response.body(), "invalid memory limit &lt;1&gt;"));
  CHECK(metric_line(fixture.metrics, "director_spawner_spawns_total{outcome=\"limits_refused\"}").ends_with(" 1"));

  fixture.runtime.create_error.reset();
  test::run_for(fixture.io, std::chrono::milliseconds(350));
  CHECK(fixture.pages.route(navigation()).result() == Status::ok);
  REQUIRE(run_until(fixture.io, [&] { return fixture.phase() == core::Phase::ready; }));
}

TEST_CASE("a wake that a died event ends shows the runtime's message on the next load, escaped") {
  Fixture fixture(std::chrono::milliseconds(60'000));
  // Awaited by its health check, which never passes: the wake waits until the event comes.
  fixture.runtime.health_after_start = core::Health::starting;
  fixture.runtime.inspects_until_healthy = 1'000'000;
  CHECK(fixture.pages.route(navigation()).result() == Status::ok);
  REQUIRE(run_until(fixture.io, [&] { return fixture.phase() == core::Phase::waiting_for_ready; }));
  // What the Kubernetes runtime's watch says of a Pod whose image the kubelet cannot pull.
  core::ContainerEvent died{core::EventKind::died, "id-vscode-alice", "alice", core::Health::none, std::nullopt, "alice"};
  died.error = "ImagePullBackOff: Back-off pulling image \"<b>registry.example/ide:1.2</b>\"";
  fixture.service->on_event(died);
  // The loading page's script sees the failure, and its reload (or the meta refresh) gets the page.
  const auto status = Json::parse(fixture.pages.route(fetch("/.container-director/status")).body());
  CHECK(status["phase"] == "failed");
  CHECK(status["reason"] == "exited");
  const auto response = fixture.pages.route(navigation());
  CHECK(response.result() == Status::bad_gateway);
  CHECK(response["X-Director-Reason"] == "exited");
  const std::string escaped = "ImagePullBackOff: Back-off pulling image &quot;&lt;b&gt;registry.example/ide:1.2&lt;/b&gt;&quot;";
  CHECK(contains(response.body(), "<dt>Runtime error</dt><dd>" + escaped + "</dd>"));
  CHECK(contains(response.body(), escaped + ")</pre>"));  // the failure's detail
  CHECK_FALSE(contains(response.body(), "<b>registry"));
  // Not "started, then exited": such a Pod never ran.
  CHECK(contains(response.body(), "could not run your container, or it stopped before it was ready"));
  CHECK_FALSE(contains(response.body(), "started, then exited"));
  // /users carries it as JSON text, whole.
  const auto users = Json::parse(fixture.operators.route(Request{Method::get, "/users", 11}).body());
  REQUIRE(users["users"].size() == 1);
  CHECK(users["users"][0]["failure_message"].get<std::string>().find(died.error) != std::string::npos);
}

TEST_CASE("a user whose container is ready yet who is sent here gets the not reachable page") {
  Fixture fixture;
  fixture.pages.route(navigation());
  REQUIRE(run_until(fixture.io, [&] { return fixture.phase() == core::Phase::ready; }));
  auto request = navigation();
  request.set("X-Director-Reason", "connect_refused");
  const auto response = fixture.pages.route(request);
  CHECK(response.result() == Status::bad_gateway);
  CHECK(response["X-Director-Reason"] == "container_unreachable");
  CHECK(contains(response.body(), "connect_refused"));
  // Its logs are fetched for the next load.
  REQUIRE(run_until(fixture.io, [&] { return fixture.runtime.log_reads == 1; }));
  const auto again = fixture.pages.route(request);
  CHECK(contains(again.body(), "&lt;script&gt;alert(1)&lt;/script&gt;"));
  CHECK(fixture.runtime.creates == 1);
}

TEST_CASE("a container found running without a check gets a readiness check, not the unreachable page") {
  Fixture fixture;
  fixture.runtime.containers["vscode-alice"] = test::managed_running("alice");
  fixture.service->on_snapshot({test::managed_running("alice")});
  REQUIRE(fixture.phase() == core::Phase::ready);
  const auto response = fixture.pages.route(navigation());
  CHECK(response.result() == Status::ok);  // the loading page while the check runs
  REQUIRE(run_until(fixture.io, [&] { return fixture.service->view("alice").ready_checked.has_value(); }));
  CHECK(fixture.runtime.inspects >= 1);
  CHECK(fixture.runtime.creates == 0);
  // The check passed, yet the director sends the user here: the container is unreachable.
  CHECK(fixture.pages.route(navigation()).result() == Status::bad_gateway);
}

TEST_CASE("the operator endpoints: readiness follows the watcher, users and metrics") {
  Fixture fixture;
  const auto not_ready = fixture.operators.route(Request{Method::get, "/readyz", 11});
  CHECK(not_ready.result() == Status::service_unavailable);
  CHECK(Json::parse(not_ready.body())["problems"].size() == 2);
  fixture.watcher->start();
  REQUIRE(run_until(fixture.io, [&] { return fixture.watcher->stream_connected(); }));
  CHECK(fixture.operators.route(Request{Method::get, "/readyz", 11}).result() == Status::ok);
  CHECK(fixture.operators.route(Request{Method::get, "/healthz", 11}).result() == Status::ok);

  fixture.pages.route(navigation());
  REQUIRE(run_until(fixture.io, [&] { return fixture.phase() == core::Phase::ready; }));
  const auto users = Json::parse(fixture.operators.route(Request{Method::get, "/users?limit=10", 11}).body());
  CHECK(users["total"] == 1);
  CHECK(users["users"][0]["label"] == "alice");
  CHECK(users["users"][0]["phase"] == "ready");
  CHECK(fixture.operators.route(Request{Method::get, "/users?limit=x", 11}).result() == Status::bad_request);

  const auto metrics = fixture.operators.route(Request{Method::get, "/metrics", 11}).body();
  CHECK(contains(metrics, "director_spawner_users{phase=\"ready\"} 1"));
  CHECK(contains(metrics, "director_spawner_containers{state=\"running\"} 1"));
  CHECK(contains(metrics, "director_spawner_runtime_requests_total{call=\"create\",outcome=\"ok\"} 1"));

  const auto status = Json::parse(fixture.operators.route(Request{Method::get, "/status", 11}).body());
  CHECK(status["runtime"]["api_version"] == "1.41");
  CHECK(status["counts"]["users_by_phase"]["ready"] == 1);
}

TEST_CASE("metrics shows how many Pods the Kubernetes runtime knows stuck Terminating, 0 from the start") {
  Fixture fixture;
  const auto series = "director_spawner_kubernetes_pods_stuck_terminating";
  CHECK(contains(fixture.operators.route(Request{Method::get, "/metrics", 11}).body(), std::string(series) + " 0\n"));
  fixture.metrics.kubernetes_pods_stuck(2);
  CHECK(contains(fixture.operators.route(Request{Method::get, "/metrics", 11}).body(), std::string(series) + " 2\n"));
  fixture.metrics.kubernetes_pods_stuck(0);
  CHECK(contains(fixture.operators.route(Request{Method::get, "/metrics", 11}).body(), std::string(series) + " 0\n"));
}

TEST_CASE("a stopping spawner is not ready and takes no new event feed subscriber") {
  Fixture fixture;
  fixture.watcher->start();
  REQUIRE(run_until(fixture.io, [&] { return fixture.watcher->stream_connected(); }));
  REQUIRE(fixture.operators.route(Request{Method::get, "/readyz", 11}).result() == Status::ok);

  fixture.service->stop();
  const auto stopping = fixture.operators.route(Request{Method::get, "/readyz", 11});
  CHECK(stopping.result() == Status::service_unavailable);
  const auto problems = Json::parse(stopping.body())["problems"];
  REQUIRE(problems.size() == 1);
  CHECK(contains(problems[0].get<std::string>(), "stopping"));

  const auto events = fixture.operators.select(Request{Method::get, "/events", 11});
  REQUIRE(std::holds_alternative<const director::net::http::StreamHandler*>(events));
  const auto answer = (*std::get<const director::net::http::StreamHandler*>(events))(Request{Method::get, "/events", 11});
  CHECK(answer.head.result() == Status::service_unavailable);
  CHECK(!answer.body);
  CHECK(fixture.feed.subscribers() == 0);
}

TEST_CASE("GET /events answers 503 while the spawner does not follow the runtime's events, naming why") {
  Fixture fixture;
  const auto subscribe = [&] {
    const auto events = fixture.operators.select(Request{Method::get, "/events", 11});
    REQUIRE(std::holds_alternative<const director::net::http::StreamHandler*>(events));
    return (*std::get<const director::net::http::StreamHandler*>(events))(Request{Method::get, "/events", 11});
  };
  // Not listed yet (the watcher not started).
  const auto refused = subscribe();
  CHECK(refused.head.result() == Status::service_unavailable);
  CHECK(contains(refused.head.body(), "not following the container runtime's events"));
  CHECK(!refused.body);
  fixture.watcher->start();
  REQUIRE(run_until(fixture.io, [&] { return fixture.watcher->stream_connected(); }));
  CHECK(subscribe().head.result() == Status::ok);
  // The runtime's stream ended: refused again until the next listing.
  fixture.feed.on_runtime_lost();
  CHECK(subscribe().head.result() == Status::service_unavailable);
}

TEST_CASE("GET /events streams NDJSON: the snapshot first, then the events") {
  Fixture fixture;
  fixture.runtime.containers["vscode-alice"] = test::managed_running("alice");
  fixture.watcher->start();
  REQUIRE(run_until(fixture.io, [&] { return fixture.watcher->stream_connected(); }));
  director::net::http::HttpServer http(fixture.io, {boost::asio::ip::address_v4::loopback(), 0}, "HTTP",
                                       std::move(fixture.operators));
  http.start();

  std::string received;
  std::string content_type;
  bool done = false;
  boost::asio::co_spawn(
      fixture.io,
      [&]() -> boost::asio::awaitable<void> {
        director::net::http::ClientEndpoint endpoint =
            director::net::http::TcpEndpoint{"127.0.0.1", http.local_endpoint().port()};
        director::net::http::ClientRequest request{http::verb::get, "/events", 11};
        co_await director::net::http::stream(
            std::move(endpoint), std::move(request),
            [&](const director::net::http::StreamHead& head) { content_type = std::string(head[http::field::content_type]); },
            [&](std::string_view data) {
              received += data;
              return std::count(received.begin(), received.end(), '\n') < 2;
            });
        done = true;
      },
      director::net::log_if_thrown("test client"));
  REQUIRE(run_until(fixture.io, [&] { return received.find('\n') != std::string::npos; }));
  fixture.feed.on_event(core::ContainerEvent{core::EventKind::died, "id-alice", "alice", core::Health::none, 137, {}});
  REQUIRE(run_until(fixture.io, [&] { return done; }));
  CHECK(content_type == "application/x-ndjson");
  const auto first = Json::parse(received.substr(0, received.find('\n')));
  CHECK(first["type"] == "snapshot");
  CHECK(first["containers"][0]["label"] == "alice");
  const auto second = Json::parse(received.substr(received.find('\n') + 1));
  CHECK(second == Json{{"type", "died"}, {"label", "alice"}, {"id", "id-alice"}, {"exit_code", 137}});
  http.stop();
}
