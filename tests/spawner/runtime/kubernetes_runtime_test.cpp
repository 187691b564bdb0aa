// KubernetesRuntime (spawner/src/runtime/kubernetes_runtime.hpp) against the Kubernetes API
// stand-in, tools/kube_api_standin.py, run as a process by each test: HTTPS with a throwaway CA
// and a bearer token, both written as a pod finds them (--serviceaccount-dir). The test plays
// the kubelet through the stand-in's control API (/_standin/...).
#include "runtime/kubernetes_runtime.hpp"

#include "net/awaitable.hpp"
#include "net/tls_client.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <optional>
#include <string>
#include <vector>

#include "../../common/child_process_fixture.hpp"
#include "../../common/stderr_capture.hpp"
#include "../../server/asio_test_support.hpp"

namespace asio = boost::asio;
namespace core = director::spawner::core;
namespace http = director::net::http;
using director::spawner::runtime::KubernetesRuntime;
using director::spawner::runtime::KubernetesRuntimeSettings;
using director::test::run_until_complete;
using Json = nlohmann::json;
using Verb = boost::beast::http::verb;
using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;

// REQUIREs that a RuntimeResult holds a value, showing the runtime's message when not. (A
// co_await inside CHECK(...) of a RuntimeResult<std::string> came out false although the call
// succeeded, with GCC 12: such results are awaited into a variable first.)
#define REQUIRE_OK(result)                                                          \
  do {                                                                              \
    const auto& checked = (result);                                                 \
    INFO((checked ? std::string() : checked.error().message));                     \
    REQUIRE(checked.has_value());                                                   \
  } while (false)

namespace {

constexpr const char* ns = "director";

asio::awaitable<void> sleep_for(std::chrono::milliseconds duration) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  co_await timer.async_wait(director::net::nothrow_awaitable);
}

// The stand-in as a process on a reserved port of 127.0.0.1, its service account files in a
// temporary directory.
class KubeStandin {
 public:
  KubeStandin() : port_(reservation_.port()) {
    const auto log = directory_ / "standin.log";
    const int error = process_.start(DIRECTOR_TEST_PYTHON,
                                     {DIRECTOR_TEST_PYTHON, DIRECTOR_TEST_KUBE_STANDIN, "--listen",
                                      "127.0.0.1:" + std::to_string(port_), "--serviceaccount-dir",
                                      (directory_ / "serviceaccount").string(), "--namespace", ns,
                                      "--termination-delay", "0.3"},
                                     log, director::test::ChildProcess::Log::truncate);
    REQUIRE(error == 0);
    const bool ready = process_.wait_until_ready(
        [&] { return director::test::read_file(log).find("kube-api stand-in: https://") != std::string::npos; }, 20s, 50ms);
    INFO(director::test::read_file(log));
    REQUIRE(ready);
  }

  std::filesystem::path token_file() const { return directory_ / "serviceaccount" / "token"; }

  KubernetesRuntimeSettings settings() const {
    KubernetesRuntimeSettings settings;
    settings.api = {"127.0.0.1", port_, (directory_ / "serviceaccount" / "ca.crt").string(), ""};
    settings.token_file = token_file().string();
    settings.namespace_name = ns;
    settings.container_port = 8080;
    settings.volume_size = "1Gi";
    settings.timeout = 10s;
    settings.container_template = container_template();
    return settings;
  }

  // What every user's Pod is made of (the spawner's template; start() renders it).
  static core::ContainerTemplate container_template() {
    core::ContainerTemplate made;
    made.host_prefix = "vscode";
    made.image = "codercom/code-server:4.96.4";
    made.command = {"--bind-addr", "0.0.0.0:8080"};
    made.environment = {"USER={label}"};
    made.volume_prefix = "director-home";
    made.volume_mount = "/home/coder";
    made.memory_bytes = 1ULL << 30;
    made.health_check.command = {"true"};
    return made;
  }

  // A request to the API with the current token, or to the control API (/_standin/..., none).
  asio::awaitable<http::ClientResponse> request(Verb method, std::string target, const Json& body = nullptr) {
    http::ClientRequest request(method, target, 11);
    std::string token = director::test::read_file(token_file());
    while (!token.empty() && token.back() == '\n') token.pop_back();  // a newline in a header would end the head
    request.set(boost::beast::http::field::authorization, "Bearer " + token);
    if (!body.is_null()) {
      request.set(boost::beast::http::field::content_type, "application/json");
      request.body() = body.dump();
    }
    request.prepare_payload();
    auto response = co_await http::request(settings().api, std::move(request));
    INFO((response ? std::string() : response.error().message));
    REQUIRE(response.has_value());
    co_return std::move(*response);
  }
  // `body`: JSON text (a braced Json in a co_await expression does not compile with GCC 12:
  // "array used as initializer").
  asio::awaitable<void> control(std::string path, std::string body = "{}") {
    const auto response = co_await request(Verb::post, "/_standin" + path, Json::parse(body));
    INFO(response.body());
    CHECK(response.result_int() == 200);
  }
  asio::awaitable<Json> get(std::string resource, std::string name) {
    const auto response = co_await request(Verb::get, "/api/v1/namespaces/director/" + resource + "/" + name);
    if (response.result_int() == 404) co_return Json();
    REQUIRE(response.result_int() == 200);
    co_return Json::parse(response.body());
  }
  // [method, path, query] of the API requests served so far.
  asio::awaitable<Json> requests() {
    co_return Json::parse((co_await request(Verb::get, "/_standin/requests")).body());
  }

 private:
  director::test::TempDirectory directory_{"kube-runtime-test"};
  director::test::PortReservation reservation_;  // the stand-in binds it (SO_REUSEADDR)
  std::uint16_t port_;
  director::test::ChildProcess process_{SIGTERM};
};

// The spec the lifecycle's create would give the runtime for this user.
core::ContainerSpec spec_for(const std::string& label) {
  return core::render(KubeStandin::container_template(), core::UserIdentity{label + "@Example.com", label});
}

// Whose container <prefix>-<label> is, as the lifecycle's record tells start() (spec_for's user).
core::UserIdentity user_of(const std::string& name) {
  const std::string label = name.substr(name.find('-') + 1);
  return {label + "@Example.com", label};
}

// The user `label` created and started (its Service and Pod made); their spec.
asio::awaitable<core::ContainerSpec> created_and_started(KubernetesRuntime& runtime, const std::string& label) {
  const auto spec = spec_for(label);
  const auto created = co_await runtime.create(spec);
  REQUIRE_OK(created);
  REQUIRE((co_await runtime.start(spec.name, user_of(spec.name))).has_value());
  co_return spec;
}

// The user `label` created and started, then their Pod Terminating for good (a lost node), its
// grace period ended `since` seconds ago by the stand-in's clock; their spec.
asio::awaitable<core::ContainerSpec> started_then_stuck(KubeStandin& api, KubernetesRuntime& runtime,
                                                        const std::string& label, int since) {
  const auto spec = co_await created_and_started(runtime, label);
  co_await api.control("/pods/director/" + spec.name + "/stuck-terminating", "{\"since\":" + std::to_string(since) + "}");
  co_return spec;
}

std::string pod_status_path(const std::string& name) { return "/pods/director/" + name + "/status"; }

bool requested(const Json& requests, std::string_view method, const std::string& path, const Json& query) {
  return std::any_of(requests.begin(), requests.end(), [&](const Json& row) {
    return row[0] == method && row[1] == path && row[2] == query;
  });
}

}  // namespace

TEST_CASE("a user's life against the API stand-in: create, start, stop, start again, remove") {
  KubeStandin api;
  asio::io_context io;
  KubernetesRuntime runtime(api.settings());
  run_until_complete(io, [&]() -> asio::awaitable<void> {
    const auto info = co_await runtime.ping();
    REQUIRE(info.has_value());
    CHECK(info->name == "Kubernetes v1.20.0-standin");
    CHECK(info->api_version == "v1");
    CHECK_FALSE((co_await runtime.inspect("vscode-alice")).value());
    CHECK_FALSE((co_await runtime.image_has_health_check("codercom/code-server:4.96.4")).value());
    CHECK((co_await runtime.pull("codercom/code-server:4.96.4")).has_value());

    // create: the claim and the Service; the user is stopped (no Pod).
    const auto spec = spec_for("alice");
    const auto id = co_await runtime.create(spec);
    REQUIRE(id.has_value());
    CHECK(*id == "vscode-alice");
    const Json claim = co_await api.get("persistentvolumeclaims", "director-home-alice");
    REQUIRE(claim.is_object());
    CHECK(claim["spec"]["resources"]["requests"]["storage"] == "1Gi");
    const Json service = co_await api.get("services", "vscode-alice");
    REQUIRE(service.is_object());
    CHECK(service["spec"]["selector"]["io.container-director.label"] == "alice");
    CHECK((co_await api.get("pods", "vscode-alice")).is_null());
    auto status = (co_await runtime.inspect(*id)).value();
    REQUIRE(status);
    CHECK(status->state == core::ContainerState::exited);
    CHECK(status->exit_code == 0);
    CHECK(status->managed);
    CHECK(status->label == "alice");
    CHECK(status->username == "alice@Example.com");

    // A second create: the Service exists.
    const auto again = co_await runtime.create(spec);
    REQUIRE_FALSE(again.has_value());
    CHECK(again.error().error == core::CallError::conflict);
    CHECK(again.error().http_status == 409);

    CHECK_FALSE(service["metadata"]["annotations"].contains("io.container-director.pod"));  // no manifest kept

    // start: the Pod rendered from the template for the Service's user.
    REQUIRE((co_await runtime.start(*id, user_of(*id))).has_value());
    const Json pod = co_await api.get("pods", "vscode-alice");
    REQUIRE(pod.is_object());
    CHECK(pod["spec"]["containers"][0]["image"] == "codercom/code-server:4.96.4");
    CHECK(pod["spec"]["containers"][0]["args"] == Json{"--bind-addr", "0.0.0.0:8080"});
    CHECK(pod["spec"]["containers"][0]["env"] == Json::parse(R"([{"name":"USER","value":"alice"}])"));
    CHECK(pod["metadata"]["labels"] == service["metadata"]["labels"]);
    CHECK(pod["metadata"]["annotations"]["io.container-director.user"] == "alice@Example.com");
    CHECK(pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "director-home-alice");
    CHECK((co_await runtime.inspect(*id)).value()->state == core::ContainerState::created);

    // The kubelet runs it; start again changes nothing.
    co_await api.control(pod_status_path("vscode-alice"), R"({"phase":"Running","ready":true})");
    status = (co_await runtime.inspect(*id)).value();
    CHECK(status->state == core::ContainerState::running);
    CHECK(status->health == core::Health::healthy);
    REQUIRE((co_await runtime.start(*id, user_of(*id))).has_value());
    CHECK((co_await api.get("pods", "vscode-alice"))["metadata"]["uid"] == pod["metadata"]["uid"]);

    // logs: the tail, at most max_bytes of its end.
    co_await api.control("/pods/director/vscode-alice/log", R"({"text":"one\ntwo\nthree\n"})");
    const auto tail = co_await runtime.logs(*id, 2, 1000);
    CHECK(tail.value() == "two\nthree\n");
    const auto end = co_await runtime.logs(*id, 10, 4);
    CHECK(end.value() == "ree\n");

    const auto listed = (co_await runtime.list_managed()).value();
    REQUIRE(listed.size() == 1);
    CHECK(listed[0].name == "vscode-alice");
    CHECK(listed[0].state == core::ContainerState::running);

    // stop: a graceful deletion, complete when the call returns.
    REQUIRE((co_await runtime.stop(*id, 2s)).has_value());
    CHECK((co_await api.get("pods", "vscode-alice")).is_null());
    CHECK((co_await runtime.inspect(*id)).value()->state == core::ContainerState::exited);
    const Json served = co_await api.requests();
    CHECK(requested(served, "DELETE", "/api/v1/namespaces/director/pods/vscode-alice", Json::parse(R"({"gracePeriodSeconds":"2"})")));
    REQUIRE((co_await runtime.stop(*id, 2s)).has_value());  // stopped already: fine

    // Started again: a new Pod; it fails; a start replaces it.
    REQUIRE((co_await runtime.start(*id, user_of(*id))).has_value());
    const Json second = co_await api.get("pods", "vscode-alice");
    CHECK(second["metadata"]["uid"] != pod["metadata"]["uid"]);
    co_await api.control("/pods/director/vscode-alice/node-failure");
    CHECK((co_await runtime.inspect(*id)).value()->state == core::ContainerState::exited);
    REQUIRE((co_await runtime.start(*id, user_of(*id))).has_value());
    const Json third = co_await api.get("pods", "vscode-alice");
    CHECK(third["metadata"]["uid"] != second["metadata"]["uid"]);
    CHECK((co_await runtime.inspect(*id)).value()->state == core::ContainerState::created);
    // A grace period of 0 would be a force deletion (the object gone before the container):
    // stop asks for at least a second.
    REQUIRE((co_await runtime.stop(*id, 0s)).has_value());
    CHECK(requested(co_await api.requests(), "DELETE", "/api/v1/namespaces/director/pods/vscode-alice",
                    Json::parse(R"({"gracePeriodSeconds":"1"})")));
    REQUIRE((co_await runtime.start(*id, user_of(*id))).has_value());

    // remove: the Pod and the Service, never the claim; a new create keeps using it.
    REQUIRE((co_await runtime.remove(*id)).has_value());
    CHECK_FALSE((co_await runtime.inspect(*id)).value());
    CHECK((co_await api.get("persistentvolumeclaims", "director-home-alice"))["metadata"]["uid"] == claim["metadata"]["uid"]);
    CHECK((co_await runtime.list_managed()).value().empty());
    const auto recreated = co_await runtime.create(spec);
    REQUIRE_OK(recreated);
  }());
}

TEST_CASE("start waits for a Pod still being deleted, and an image that cannot be pulled shows in inspect") {
  KubeStandin api;
  asio::io_context io;
  KubernetesRuntime runtime(api.settings());
  run_until_complete(io, [&]() -> asio::awaitable<void> {
    const auto spec = co_await created_and_started(runtime, "bob");
    const Json first = co_await api.get("pods", spec.name);
    // Deleted gracefully by someone else: terminating for 0.3 s; a start waits it out.
    co_await api.request(Verb::delete_, "/api/v1/namespaces/director/pods/" + spec.name);
    // exited, not removing: the lifecycle fails a wake of a removing container, and this one
    // is a stop under way that a start waits out.
    const auto terminating = co_await runtime.inspect(spec.name);
    CHECK(terminating.value()->state == core::ContainerState::exited);
    REQUIRE((co_await runtime.start(spec.name, user_of(spec.name))).has_value());
    const Json second = co_await api.get("pods", spec.name);
    REQUIRE(second.is_object());
    CHECK(second["metadata"]["uid"] != first["metadata"]["uid"]);
    CHECK_FALSE(second["metadata"].contains("deletionTimestamp"));

    co_await api.control(pod_status_path(spec.name),
                         R"({"containerState":{"waiting":{"reason":"ErrImagePull","message":"manifest unknown"}}})");
    const auto status = (co_await runtime.inspect(spec.name)).value();
    CHECK(status->state == core::ContainerState::exited);
    CHECK(status->error == "ErrImagePull: manifest unknown");
    // A container that wrote nothing yet (the stand-in answers 400 "waiting to start"): no output.
    const auto nothing = co_await runtime.logs(spec.name, 10, 100);
    CHECK(nothing.value().empty());
    CHECK((co_await runtime.start("vscode-nobody", user_of("vscode-nobody"))).error().error == core::CallError::not_found);
  }());
}

TEST_CASE("failures are classified: 500 and 429 unavailable, a wrong token refused, the token read again") {
  KubeStandin api;
  asio::io_context io;
  KubernetesRuntime runtime(api.settings());
  run_until_complete(io, [&]() -> asio::awaitable<void> {
    REQUIRE((co_await runtime.ping()).has_value());
    co_await api.control("/fail-next", R"({"verb":"create","count":1,"code":500})");
    auto created = co_await runtime.create(spec_for("carol"));
    REQUIRE_FALSE(created.has_value());
    CHECK(created.error().error == core::CallError::unavailable);
    CHECK(created.error().http_status == 500);
    co_await api.control("/fail-next", R"({"verb":"get","count":1,"code":429})");
    const auto inspected = co_await runtime.inspect("vscode-carol");
    REQUIRE_FALSE(inspected.has_value());
    CHECK(inspected.error().error == core::CallError::unavailable);
    CHECK(inspected.error().http_status == 429);

    // The API server's token rotates: refused (401, naming the token) until the file has it.
    co_await api.control("/token", R"({"token":"rotated-token-0002"})");
    const auto versions = [](const Json& served) {
      return std::count_if(served.begin(), served.end(), [](const Json& row) { return row[1] == "/version"; });
    };
    const auto versions_before = versions(co_await api.requests());
    const auto refused = co_await runtime.ping();
    CHECK(versions(co_await api.requests()) - versions_before == 2);  // one more after the 401, no loop
    REQUIRE_FALSE(refused.has_value());
    CHECK(refused.error().error == core::CallError::refused);
    CHECK(refused.error().http_status == 401);
    CHECK(refused.error().message.find("token") != std::string::npos);
    director::test::write_file(api.token_file(), "rotated-token-0002\n");
    CHECK((co_await runtime.ping()).has_value());
    const auto created_now = co_await runtime.create(spec_for("carol"));
    REQUIRE_OK(created_now);

    // Rotated again, the file rewritten at the same size with the same time (a rewrite within
    // the file time's resolution): the 401 makes the runtime read it again and call once more.
    const auto written = std::filesystem::last_write_time(api.token_file());
    co_await api.control("/token", R"({"token":"rotated-token-0003"})");
    director::test::write_file(api.token_file(), "rotated-token-0003\n");
    std::filesystem::last_write_time(api.token_file(), written);
    const auto reread = co_await runtime.ping();
    REQUIRE_OK(reread);

    std::filesystem::remove(api.token_file());
    const auto missing = co_await runtime.ping();
    REQUIRE_FALSE(missing.has_value());
    CHECK(missing.error().error == core::CallError::unavailable);
    CHECK(missing.error().message.find(api.token_file().string()) != std::string::npos);
    director::test::write_file(api.token_file(), "");
    const auto empty = co_await runtime.ping();
    REQUIRE_FALSE(empty.has_value());
    CHECK(empty.error().message.find("empty") != std::string::npos);
  }());
}

namespace {

struct Watched {
  bool subscribed = false;
  std::vector<core::ContainerEvent> events;
  std::optional<director::spawner::runtime::RuntimeError> error;  // why watch() returned, if it did
  bool returned = false;
  bool returned_before_scenario_end = false;  // watch() returned on its own, not cancelled by the test's end
};

asio::awaitable<void> watch_into(KubernetesRuntime& runtime, Watched& watched, asio::steady_timer& subscribed_signal) {
  auto ended = co_await runtime.watch(
      [&] {
        watched.subscribed = true;
        subscribed_signal.cancel();
      },
      [&](const core::ContainerEvent& event) { watched.events.push_back(event); });
  watched.returned = true;
  if (!ended) watched.error = ended.error();
}

std::vector<std::string> kinds(const Watched& watched) {
  std::vector<std::string> names;
  for (const auto& event : watched.events) {
    names.emplace_back(event.kind == core::EventKind::created ? "created" : core::to_string(event.kind));
  }
  return names;
}

// Waits (at most 10 s) until `count` events were seen or watch() returned.
asio::awaitable<void> await_events(const Watched& watched, std::size_t count) {
  for (int waited = 0; waited < 200 && watched.events.size() < count && !watched.returned; ++waited) {
    co_await sleep_for(50ms);
  }
}

// Runs watch() until `scenario`, started once subscribed, ends (at most 30 s).
template <typename Scenario>
void watch_during(KubernetesRuntime& runtime, Watched& watched, Scenario scenario) {
  asio::io_context io;
  run_until_complete(io, [&]() -> asio::awaitable<void> {
    asio::steady_timer subscribed_signal(co_await asio::this_coro::executor, std::chrono::steady_clock::time_point::max());
    const auto after_subscription = [&]() -> asio::awaitable<void> {
      co_await subscribed_signal.async_wait(director::net::nothrow_awaitable);
      co_await scenario();
      watched.returned_before_scenario_end = watched.returned;
    };
    co_await (watch_into(runtime, watched, subscribed_signal) || (after_subscription() || sleep_for(30s)));
  }());
}

using Names = std::vector<std::string>;

}  // namespace

TEST_CASE("watch(): subscribed, then the events of a user's life in order, a clean end resumed") {
  KubeStandin api;
  KubernetesRuntime runtime(api.settings());
  Watched watched;
  watch_during(runtime, watched, [&]() -> asio::awaitable<void> {
    const auto spec = co_await created_and_started(runtime, "dave");
    co_await api.control(pod_status_path(spec.name), R"({"phase":"Running","ready":false})");
    co_await api.control(pod_status_path(spec.name), R"({"phase":"Running","ready":true})");
    co_await await_events(watched, 4);
    CHECK(kinds(watched) == Names{"created", "created", "started", "health"});
    REQUIRE((co_await runtime.stop(spec.name, 1s)).has_value());
    co_await await_events(watched, 5);
    // Both streams end cleanly (as after timeoutSeconds): resumed, nothing missed.
    co_await api.control("/end-watches");
    REQUIRE((co_await runtime.start(spec.name, user_of(spec.name))).has_value());
    co_await await_events(watched, 6);
    // The Pod's DELETED and the Service's come on two streams, in either order: the same events.
    REQUIRE((co_await runtime.remove(spec.name)).has_value());
    co_await await_events(watched, 8);
  });
  CHECK(watched.subscribed);
  INFO("watch() returned: " << (watched.error ? watched.error->message : std::string("no")));
  CHECK_FALSE(watched.returned_before_scenario_end);
  CHECK(kinds(watched) == Names{"created", "created", "started", "health", "stopped", "created", "stopped", "destroyed"});
  for (const auto& event : watched.events) {
    CHECK(event.id == "vscode-dave");
    CHECK(event.label == "dave");
    CHECK(event.username == "dave@Example.com");
  }
  const auto health = std::find_if(watched.events.begin(), watched.events.end(),
                                   [](const auto& event) { return event.kind == core::EventKind::health; });
  REQUIRE(health != watched.events.end());
  CHECK(health->health == core::Health::healthy);
}

TEST_CASE("a start right after a stop waits for the watch to tell the old Pod gone, at most 2 s") {
  KubeStandin api;
  KubernetesRuntime runtime(api.settings());
  const auto stopped_heard = [](const Watched& watched) {
    return std::count_if(watched.events.begin(), watched.events.end(),
                         [](const auto& event) { return event.kind == core::EventKind::stopped; });
  };
  Watched watched;
  watch_during(runtime, watched, [&]() -> asio::awaitable<void> {
    const auto spec = co_await created_and_started(runtime, "rita");
    co_await await_events(watched, 2);
    REQUIRE(kinds(watched) == Names{"created", "created"});
    // The watch falls behind: the old Pod's DELETED reaches the spawner half a second after
    // the API answers 404 for it. The new Pod has the same id: its wake must hear the old
    // one's stopped before it exists, never after.
    co_await api.control("/hold-watches", R"({"on":true})");
    REQUIRE((co_await runtime.stop(spec.name, 1s)).has_value());
    const auto release = [&]() -> asio::awaitable<void> {
      co_await sleep_for(500ms);
      co_await api.control("/hold-watches", R"({"on":false})");
    };
    std::ptrdiff_t heard_when_started = -1;
    const auto start = [&]() -> asio::awaitable<void> {
      REQUIRE((co_await runtime.start(spec.name, user_of(spec.name))).has_value());
      heard_when_started = stopped_heard(watched);
    };
    co_await (start() && release());
    CHECK(heard_when_started == 1);
    // A watch that stays behind delays a start by 2 s at most.
    co_await api.control("/hold-watches", R"({"on":true})");
    REQUIRE((co_await runtime.stop(spec.name, 1s)).has_value());
    const auto began = std::chrono::steady_clock::now();
    REQUIRE((co_await runtime.start(spec.name, user_of(spec.name))).has_value());
    const auto waited = std::chrono::steady_clock::now() - began;
    CHECK(waited >= 1900ms);
    CHECK(waited < 5s);
    CHECK(stopped_heard(watched) == 1);
    co_await api.control("/hold-watches", R"({"on":false})");
  });
  CHECK_FALSE(watched.returned_before_scenario_end);
  // The watch ended (cancelled): nothing to wait for, however much of it was never heard.
  asio::io_context io;
  run_until_complete(io, [&]() -> asio::awaitable<void> {
    co_await api.control("/hold-watches", R"({"on":true})");
    REQUIRE((co_await runtime.stop("vscode-rita", 1s)).has_value());
    const auto began = std::chrono::steady_clock::now();
    REQUIRE((co_await runtime.start("vscode-rita", user_of("vscode-rita"))).has_value());
    CHECK(std::chrono::steady_clock::now() - began < 1s);
    co_await api.control("/hold-watches", R"({"on":false})");
  }());
}

TEST_CASE("a second watch() of the same runtime while one runs is refused, and one after it ended is not") {
  KubeStandin api;
  KubernetesRuntime runtime(api.settings());
  Watched watched;
  // Cancelled at once (within the second a stream that ends waits before it resumes).
  watch_during(runtime, watched, [&]() -> asio::awaitable<void> {
    const auto second = co_await runtime.watch([] {}, [](const core::ContainerEvent&) {});
    REQUIRE_FALSE(second.has_value());
    CHECK(second.error().error == core::CallError::refused);
  });
  CHECK(watched.subscribed);
  CHECK_FALSE(watched.returned_before_scenario_end);
  Watched next;
  watch_during(runtime, next, []() -> asio::awaitable<void> { co_return; });
  CHECK(next.subscribed);
  CHECK_FALSE(next.error.has_value());
}

TEST_CASE("a Pod whose image cannot be pulled: died carries the kubelet's message, and the next start makes a new Pod") {
  KubeStandin api;
  KubernetesRuntime runtime(api.settings());
  Watched watched;
  Json first;
  Json second;
  watch_during(runtime, watched, [&]() -> asio::awaitable<void> {
    const auto spec = co_await created_and_started(runtime, "erin");
    first = co_await api.get("pods", spec.name);
    co_await api.control(pod_status_path(spec.name),
                         R"({"phase":"Pending","containerState":{"waiting":{"reason":"ImagePullBackOff",)"
                         R"("message":"Back-off pulling image \"<b>registry.example/ide:1.2</b>\""}}})");
    co_await await_events(watched, 3);  // created (Service), created (Pod), died
    // A retry of the pull: the Pod that cannot start is deleted and made again from the
    // template of now (a kubelet pulls at once for a new Pod; the old one sat in its back-off).
    REQUIRE((co_await runtime.start(spec.name, user_of(spec.name))).has_value());
    second = co_await api.get("pods", spec.name);
    const auto status = (co_await runtime.inspect(spec.name)).value();
    CHECK(status->state == core::ContainerState::created);
    CHECK(status->error.empty());
    co_await await_events(watched, 5);  // stopped (the old Pod), created (the new one)
  });
  const auto told = kinds(watched);
  REQUIRE(told.size() >= 3);
  CHECK(Names(told.begin(), told.begin() + 3) == Names{"created", "created", "died"});
  const auto& died = watched.events[2];
  CHECK(died.label == "erin");
  CHECK_FALSE(died.exit_code);
  // As the kubelet said it: the page escapes it (tests/spawner/server/endpoints_test.cpp), the runtime only bounds it.
  CHECK(died.error == "ImagePullBackOff: Back-off pulling image \"<b>registry.example/ide:1.2</b>\"");
  REQUIRE(first.is_object());
  REQUIRE(second.is_object());
  CHECK(second["metadata"]["uid"] != first["metadata"]["uid"]);
  CHECK_FALSE(second["status"].contains("containerStatuses"));  // the new Pod has no kubelet's word yet
  CHECK(told == Names{"created", "created", "died", "stopped", "created"});
}

namespace {

// An object outside the watch's selector: its change moves the cluster's resourceVersion past
// the last event the watch saw.
asio::awaitable<void> change_unwatched_object(KubeStandin& api, const std::string& name) {
  Json pod = Json::parse(R"({"apiVersion":"v1","kind":"Pod","spec":{"containers":[{"name":"c","image":"x"}]}})");
  pod["metadata"]["name"] = name;
  const auto response = co_await api.request(Verb::post, "/api/v1/namespaces/director/pods", pod);
  CHECK(response.result_int() == 201);
}

}  // namespace

TEST_CASE("watch(): a bookmark moves the resourceVersion, and after a compaction a lost watch ends with 410") {
  KubeStandin api;
  KubernetesRuntime runtime(api.settings());
  Watched watched;
  watch_during(runtime, watched, [&]() -> asio::awaitable<void> {
    const auto created = co_await runtime.create(spec_for("erin"));
    REQUIRE_OK(created);
    co_await await_events(watched, 1);
    // With a bookmark, the watches resume from now: a compaction of what came before is no loss.
    co_await change_unwatched_object(api, "unwatched-1");
    co_await api.control("/bookmark");
    co_await sleep_for(300ms);
    co_await api.control("/compact");
    co_await api.control("/end-watches");
    co_await sleep_for(1500ms);
    CHECK_FALSE(watched.returned);
    REQUIRE((co_await runtime.start("vscode-erin", user_of("vscode-erin"))).has_value());
    co_await await_events(watched, 2);
    CHECK(kinds(watched) == Names{"created", "created"});
    // Without one: the connections cut after a compaction; the resumed watch is too old.
    co_await change_unwatched_object(api, "unwatched-2");
    co_await api.control("/compact");
    co_await api.control("/drop-watches");
    for (int waited = 0; waited < 100 && !watched.returned; ++waited) co_await sleep_for(50ms);
  });
  REQUIRE(watched.returned_before_scenario_end);
  REQUIRE(watched.error);
  INFO(watched.error->message);
  CHECK(watched.error->http_status == 410);
  CHECK(watched.error->error == core::CallError::unavailable);
  CHECK(watched.error->message.find("too old resource version") != std::string::npos);
}

TEST_CASE("watch() ends when cancelled, also while it waits to resume a stream that ended") {
  KubeStandin api;
  KubernetesRuntime runtime(api.settings());
  Watched watched;
  const auto began = std::chrono::steady_clock::now();
  // The streams end within a second of their start: watch() waits before resuming them, and
  // the scenario's end cancels it then.
  watch_during(runtime, watched, [&]() -> asio::awaitable<void> {
    co_await api.control("/end-watches");
    co_await sleep_for(300ms);
  });
  CHECK(watched.subscribed);
  CHECK_FALSE(watched.returned_before_scenario_end);
  CHECK(std::chrono::steady_clock::now() - began < 5s);
}

TEST_CASE("start() renders the template's Pod: never a manifest a Service carries, nor for another user's name") {
  KubeStandin api;
  asio::io_context io;
  KubernetesRuntime runtime(api.settings());
  run_until_complete(io, [&]() -> asio::awaitable<void> {
    // A Service written by someone who may write Services: managed labels, a user, and a
    // hostPath, privileged Pod in the annotation the spawner once kept its manifest in.
    Json service = Json::parse(R"({"apiVersion":"v1","kind":"Service","spec":{"ports":[{"port":8080}]}})");
    const Json evil = Json::parse(R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":"vscode-mallory",
        "labels":{"io.container-director.managed":"true","io.container-director.label":"mallory"}},
        "spec":{"containers":[{"name":"main","image":"evil:1","securityContext":{"privileged":true},
        "volumeMounts":[{"name":"root","mountPath":"/host"}]}],"volumes":[{"name":"root","hostPath":{"path":"/"}}]}})");
    const auto post_service = [&](std::string name, bool managed, std::string label) -> asio::awaitable<void> {
      service["metadata"]["name"] = name;
      service["metadata"]["labels"] = Json::object();
      if (managed) service["metadata"]["labels"]["io.container-director.managed"] = "true";
      if (!label.empty()) service["metadata"]["labels"]["io.container-director.label"] = label;
      service["metadata"]["annotations"]["io.container-director.user"] = label + "@Example.com";
      service["metadata"]["annotations"]["io.container-director.pod"] = evil.dump();
      const auto response = co_await api.request(Verb::post, "/api/v1/namespaces/director/services", service);
      REQUIRE(response.result_int() == 201);
    };

    co_await post_service("vscode-mallory", true, "mallory");
    REQUIRE((co_await runtime.start("vscode-mallory", user_of("vscode-mallory"))).has_value());
    const Json pod = co_await api.get("pods", "vscode-mallory");
    REQUIRE(pod.is_object());
    CHECK(pod["spec"]["volumes"].dump().find("hostPath") == std::string::npos);
    CHECK(pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "director-home-mallory");
    CHECK(pod["spec"]["containers"][0]["image"] == "codercom/code-server:4.96.4");
    CHECK_FALSE(pod["spec"]["containers"][0].contains("securityContext"));

    // Not managed, another user's label under this name, or no user: refused, no Pod.
    co_await post_service("vscode-trudy", false, "trudy");
    co_await post_service("vscode-eve", true, "alice");
    co_await post_service("vscode-oscar", true, "");
    for (const char* name : {"vscode-trudy", "vscode-eve", "vscode-oscar"}) {
      INFO(name);
      const auto started = co_await runtime.start(name, user_of(name));
      REQUIRE_FALSE(started.has_value());
      CHECK(started.error().error == core::CallError::refused);
      CHECK(started.error().message.find("not started") != std::string::npos);
      CHECK((co_await api.get("pods", name)).is_null());
    }
    const auto eve = co_await runtime.start("vscode-eve", user_of("vscode-eve"));
    CHECK(eve.error().message.find("io.container-director.label=alice") != std::string::npos);
    CHECK((co_await api.get("pods", "vscode-alice")).is_null());
  }());
}

TEST_CASE("start() renders for the lifecycle's user, and refuses a Service naming someone else") {
  KubeStandin api;
  asio::io_context io;
  auto settings = api.settings();
  settings.container_template.environment = {"OWNER={username}"};
  KubernetesRuntime runtime(settings);
  run_until_complete(io, [&]() -> asio::awaitable<void> {
    const auto created = co_await runtime.create(spec_for("henry"));
    REQUIRE_OK(created);
    // The Service's annotation says henry@Example.com; the lifecycle's record says otherwise.
    const core::UserIdentity someone_else{"Henry@Example.com", "henry"};
    const auto started = co_await runtime.start("vscode-henry", someone_else);
    REQUIRE_FALSE(started.has_value());
    CHECK(started.error().error == core::CallError::refused);
    INFO(started.error().message);
    CHECK(started.error().message.find("is henry@Example.com's") != std::string::npos);
    CHECK(started.error().message.find("not Henry@Example.com's") != std::string::npos);
    CHECK((co_await api.get("pods", "vscode-henry")).is_null());
    // The same user: the Pod's environment has the lifecycle's username.
    REQUIRE((co_await runtime.start("vscode-henry", user_of("vscode-henry"))).has_value());
    CHECK((co_await api.get("pods", "vscode-henry"))["spec"]["containers"][0]["env"] ==
          Json::parse(R"([{"name":"OWNER","value":"henry@Example.com"}])"));

    // A managed Service with the user's label but no username: refused for that reason.
    const auto posted = co_await api.request(Verb::post, "/api/v1/namespaces/director/services", Json::parse(R"({
        "apiVersion":"v1","kind":"Service","spec":{"ports":[{"port":8080}]},
        "metadata":{"name":"vscode-olga","labels":{"io.container-director.managed":"true","io.container-director.label":"olga"}}})"));
    REQUIRE(posted.result_int() == 201);
    const auto olga = co_await runtime.start("vscode-olga", user_of("vscode-olga"));
    REQUIRE_FALSE(olga.has_value());
    CHECK(olga.error().error == core::CallError::refused);
    CHECK(olga.error().message.find("has no annotation io.container-director.user") != std::string::npos);
  }());
}

TEST_CASE("start() fails at once on a Pod stuck Terminating, naming it and the force deletion") {
  KubeStandin api;
  asio::io_context io;
  auto settings = api.settings();
  std::vector<std::size_t> reported;  // what main.cpp shows in director_spawner_kubernetes_pods_stuck_terminating
  settings.on_stuck_pods = [&reported](std::size_t count) { reported.push_back(count); };
  KubernetesRuntime runtime(settings);
  run_until_complete(io, [&]() -> asio::awaitable<void> {
    // Its node lost: Terminating, the grace period ended five minutes ago, never DELETED.
    const auto spec = co_await started_then_stuck(api, runtime, "grace", 300);
    director::test::StderrCapture log;
    const auto began = std::chrono::steady_clock::now();
    const auto started = co_await runtime.start(spec.name, user_of(spec.name));
    CHECK(std::chrono::steady_clock::now() - began < 3s);  // not the call's timeout (10 s)
    REQUIRE_FALSE(started.has_value());
    CHECK(started.error().error == core::CallError::unavailable);
    INFO(started.error().message);
    CHECK(started.error().message.find("the Pod vscode-grace has been Terminating since") != std::string::npos);
    CHECK(started.error().message.find("kubectl delete pod vscode-grace -n director --force --grace-period=0") !=
          std::string::npos);
    CHECK(reported == std::vector<std::size_t>{1});
    // Tried again: failed the same, but warned about once per Pod and deletionTimestamp, and
    // still one Pod stuck.
    CHECK_FALSE((co_await runtime.start(spec.name, user_of(spec.name))).has_value());
    CHECK(reported == std::vector<std::size_t>{1});
    const std::string logged = log.finish();
    INFO(logged);
    std::size_t warnings = 0;
    for (auto at = logged.find("stuck Terminating"); at != std::string::npos; at = logged.find("stuck Terminating", at + 1)) {
      ++warnings;
    }
    CHECK(warnings == 1);
    // A stop (idle retirement) fails as fast, with the same message.
    const auto stop_began = std::chrono::steady_clock::now();
    const auto stopped = co_await runtime.stop(spec.name, 1s);
    CHECK(std::chrono::steady_clock::now() - stop_began < 3s);
    REQUIRE_FALSE(stopped.has_value());
    CHECK(stopped.error().message.find("has been Terminating since") != std::string::npos);
    // Its deletion with the stop's 1 s grace period moved the deletionTimestamp earlier (as the
    // API server does): a new deletionTimestamp, warned about again; the same one Pod stuck.
    const auto since = [](const std::string& message) { return message.substr(message.find(" since ") + 7, 20); };
    CHECK(since(stopped.error().message) != since(started.error().message));
    CHECK(reported == std::vector<std::size_t>{1});
    // The operator forces it: the next start finds no Pod (none stuck now) and makes one.
    const auto forced = co_await api.request(Verb::delete_, "/api/v1/namespaces/director/pods/vscode-grace?gracePeriodSeconds=0");
    CHECK(forced.result_int() == 200);
    REQUIRE((co_await runtime.start(spec.name, user_of(spec.name))).has_value());
    CHECK(reported == std::vector<std::size_t>{1, 0});
    const Json pod = co_await api.get("pods", spec.name);
    REQUIRE(pod.is_object());
    CHECK_FALSE(pod["metadata"].contains("deletionTimestamp"));
  }());
}

TEST_CASE("a Pod in its grace period by the API server's clock is not stuck, however far ahead the spawner's clock") {
  KubeStandin api;
  asio::io_context io;
  auto settings = api.settings();
  settings.timeout = 1s;
  settings.local_clock = [] { return std::chrono::system_clock::now() + 10min; };
  std::vector<std::size_t> reported;
  settings.on_stuck_pods = [&reported](std::size_t count) { reported.push_back(count); };
  KubernetesRuntime runtime(settings);
  run_until_complete(io, [&]() -> asio::awaitable<void> {
    // Terminating, its grace period ended 30 s ago by the server's time: slow, not stuck.
    const auto spec = co_await started_then_stuck(api, runtime, "skew", 30);
    const auto started = co_await runtime.start(spec.name, user_of(spec.name));
    REQUIRE_FALSE(started.has_value());
    INFO(started.error().message);
    CHECK(started.error().message.find("is still being deleted") != std::string::npos);
    CHECK(started.error().message.find("--force") == std::string::npos);
    CHECK(reported.empty());
  }());
}

TEST_CASE("a stuck Pod counts until the runtime sees it gone: the watch's DELETED, or a listing without it") {
  KubeStandin api;
  auto settings = api.settings();
  std::vector<std::size_t> reported;
  settings.on_stuck_pods = [&reported](std::size_t count) { reported.push_back(count); };
  KubernetesRuntime runtime(settings);
  const auto force_delete = [&](const std::string& name) -> asio::awaitable<void> {
    const auto forced = co_await api.request(Verb::delete_, "/api/v1/namespaces/director/pods/" + name + "?gracePeriodSeconds=0");
    CHECK(forced.result_int() == 200);
  };
  // Two users' Pods on a lost node, found by their starts while the watch runs; the operator
  // forces one: its DELETED takes it off, nothing else reads it.
  Watched watched;
  watch_during(runtime, watched, [&]() -> asio::awaitable<void> {
    for (const auto* label : {"nora", "omar"}) {
      const auto spec = co_await started_then_stuck(api, runtime, label, 300);
      CHECK_FALSE((co_await runtime.start(spec.name, user_of(spec.name))).has_value());
    }
    CHECK(reported == std::vector<std::size_t>{1, 2});
    // A stop of one moves its deletionTimestamp earlier (the watch tells that change): still
    // stuck, still counted.
    CHECK_FALSE((co_await runtime.stop("vscode-omar", 1s)).has_value());
    co_await sleep_for(300ms);
    CHECK(reported == std::vector<std::size_t>{1, 2});
    co_await force_delete("vscode-nora");
    for (int waited = 0; waited < 200 && reported.back() != 1; ++waited) co_await sleep_for(50ms);
    CHECK(reported == std::vector<std::size_t>{1, 2, 1});
  });
  CHECK_FALSE(watched.returned_before_scenario_end);
  // The other forced while no watch runs: the next watch's listing no longer has it.
  asio::io_context io;
  run_until_complete(io, [&]() -> asio::awaitable<void> { co_await force_delete("vscode-omar"); }());
  Watched again;
  watch_during(runtime, again, []() -> asio::awaitable<void> { co_return; });
  CHECK(again.subscribed);
  CHECK(reported == std::vector<std::size_t>{1, 2, 1, 0});
}

TEST_CASE("a restarted spawner's first watch counts the Pods stuck Terminating before it started, warned about once") {
  KubeStandin api;
  {
    // The spawner before its restart: two users started, then their node lost; a third user's
    // Pod Terminating in its grace period by the server's time (slow, not stuck).
    asio::io_context io;
    KubernetesRuntime before(api.settings());
    run_until_complete(io, [&]() -> asio::awaitable<void> {
      co_await started_then_stuck(api, before, "pia", 300);
      co_await started_then_stuck(api, before, "quinn", 300);
      co_await started_then_stuck(api, before, "rosa", 30);
    }());
  }
  auto settings = api.settings();
  settings.local_clock = [] { return std::chrono::system_clock::now() + 10min; };  // the server's Date decides
  std::vector<std::size_t> reported;
  settings.on_stuck_pods = [&reported](std::size_t count) { reported.push_back(count); };
  KubernetesRuntime after(settings);
  director::test::StderrCapture log;
  Watched watched;
  watch_during(after, watched, []() -> asio::awaitable<void> { co_return; });
  CHECK(watched.subscribed);
  CHECK(reported == std::vector<std::size_t>{1, 2});
  // A start that finds one of them adds nothing, and warns no more; nor does the next watch.
  asio::io_context io;
  run_until_complete(io, [&]() -> asio::awaitable<void> {
    CHECK_FALSE((co_await after.start("vscode-pia", user_of("vscode-pia"))).has_value());
  }());
  Watched again;
  watch_during(after, again, []() -> asio::awaitable<void> { co_return; });
  CHECK(reported == std::vector<std::size_t>{1, 2});
  const std::string logged = log.finish();
  INFO(logged);
  CHECK(logged.find("vscode-pia") != std::string::npos);
  CHECK(logged.find("vscode-quinn") != std::string::npos);
  CHECK(logged.find("vscode-rosa") == std::string::npos);
  std::size_t warnings = 0;
  for (auto at = logged.find("stuck Terminating"); at != std::string::npos; at = logged.find("stuck Terminating", at + 1)) {
    ++warnings;
  }
  CHECK(warnings == 2);
}

TEST_CASE("a template changed since create() shows at the user's next start, a new volume prefix as a new claim") {
  KubeStandin api;
  asio::io_context io;
  run_until_complete(io, [&]() -> asio::awaitable<void> {
    KubernetesRuntime before(api.settings());
    const auto created = co_await before.create(spec_for("frank"));
    REQUIRE_OK(created);
    REQUIRE((co_await before.start("vscode-frank", user_of("vscode-frank"))).has_value());
    CHECK((co_await api.get("pods", "vscode-frank"))["spec"]["containers"][0]["image"] == "codercom/code-server:4.96.4");
    REQUIRE((co_await before.stop("vscode-frank", 1s)).has_value());

    // The spawner restarted with a new image, environment and volume prefix: the next start
    // has them, and makes the claim create() never made (never a Pod Pending on a missing claim).
    auto settings = api.settings();
    settings.container_template.image = "codercom/code-server:4.99.0";
    settings.container_template.environment = {"OWNER={username}"};
    settings.container_template.volume_prefix = "director-data";
    KubernetesRuntime after(settings);
    REQUIRE((co_await after.start("vscode-frank", user_of("vscode-frank"))).has_value());
    const Json pod = co_await api.get("pods", "vscode-frank");
    CHECK(pod["spec"]["containers"][0]["image"] == "codercom/code-server:4.99.0");
    CHECK(pod["spec"]["containers"][0]["env"] == Json::parse(R"([{"name":"OWNER","value":"frank@Example.com"}])"));
    CHECK(pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "director-data-frank");
    const Json claim = co_await api.get("persistentvolumeclaims", "director-data-frank");
    REQUIRE(claim.is_object());
    CHECK(claim["metadata"]["labels"]["io.container-director.label"] == "frank");
    CHECK((co_await api.get("persistentvolumeclaims", "director-home-frank")).is_object());  // kept
    // Started again: the claim exists (409), which is no failure.
    REQUIRE((co_await after.stop("vscode-frank", 1s)).has_value());
    REQUIRE((co_await after.start("vscode-frank", user_of("vscode-frank"))).has_value());
  }());
}

TEST_CASE("list_managed() reads a listing longer than a page, page by page") {
  KubeStandin api;
  asio::io_context io;
  KubernetesRuntime runtime(api.settings());
  run_until_complete(io, [&]() -> asio::awaitable<void> {
    const unsigned users = KubernetesRuntime::page_size + 1;
    Json service = Json::parse(R"({"apiVersion":"v1","kind":"Service","spec":{"ports":[{"port":8080}]}})");
    service["metadata"]["labels"]["io.container-director.managed"] = "true";
    for (unsigned user = 0; user < users; ++user) {
      service["metadata"]["name"] = "vscode-user" + std::to_string(user);
      service["metadata"]["labels"]["io.container-director.label"] = "user" + std::to_string(user);
      const auto response = co_await api.request(Verb::post, "/api/v1/namespaces/director/services", service);
      REQUIRE(response.result_int() == 201);
    }
    const auto listed = co_await runtime.list_managed();
    REQUIRE_OK(listed);
    CHECK(listed->size() == users);
    const Json served = co_await api.requests();
    const std::string services = "/api/v1/namespaces/director/services";
    const Json first = Json::parse(R"({"labelSelector":"io.container-director.managed=true","limit":"500"})");
    Json second = first;
    second["continue"] = "500";
    CHECK(requested(served, "GET", services, first));
    CHECK(requested(served, "GET", services, second));

    // The continue token expires (its snapshot compacted): the list starts over, once.
    co_await api.control("/expire-continue", R"({"count":1})");
    const auto started_over = co_await runtime.list_managed();
    REQUIRE_OK(started_over);
    CHECK(started_over->size() == users);
    co_await api.control("/expire-continue", R"({"count":2})");
    const auto expired_twice = co_await runtime.list_managed();
    REQUIRE_FALSE(expired_twice.has_value());
    CHECK(expired_twice.error().http_status == 410);
    CHECK(expired_twice.error().error == core::CallError::unavailable);  // retried, as a watch's 410
  }());
}
