// docker_api (spawner/src/runtime/docker_api.hpp): the Docker Engine API's JSON to and from
// the core's types, on what Podman 4.3.1 answered here (tests/data/docker-api/podman-4.3-*)
// and on Docker's documented forms where Podman differs.
#include "runtime/docker_api.hpp"

#include "api_fixture.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <string>

namespace docker = director::spawner::runtime::docker;
namespace core = director::spawner::core;
using Json = nlohmann::json;

namespace {

std::string fixture(const std::string& name) { return director::test::api_fixture("docker-api", name); }

core::ContainerSpec alice_spec() {
  core::ContainerSpec spec;
  spec.name = "vscode-alice";
  spec.image = "codercom/code-server:latest";
  spec.command = {"code-server", "--bind-addr", "0.0.0.0:8080"};
  spec.environment = {"USER=alice"};
  spec.labels = {{std::string(core::managed_label), "true"}, {std::string(core::label_label), "alice"},
                 {std::string(core::user_label), "Alice"}};
  spec.network = "director-users";
  spec.network_aliases = {"vscode-alice"};
  spec.volume_name = "director-home-alice";
  spec.volume_mount = "/home/coder";
  spec.memory_bytes = 2ULL << 30;
  spec.nano_cpus = 1'500'000'000;
  spec.pids_limit = 512;
  spec.restart = core::RestartPolicy::unless_stopped;
  spec.health_check.command = {"curl -fs http://localhost:8080/healthz"};
  spec.health_check.interval = std::chrono::milliseconds(5000);
  spec.health_check.timeout = std::chrono::milliseconds(3000);
  spec.health_check.start_period = std::chrono::milliseconds(1500);
  spec.health_check.retries = 4;
  return spec;
}

}  // namespace

TEST_CASE("the API version is the older of ours (1.44) and the daemon's, never below 1.41") {
  CHECK(docker::negotiate_api_version("1.41") == "1.41");  // Podman 4.3
  CHECK(docker::negotiate_api_version("1.43") == "1.43");
  CHECK(docker::negotiate_api_version("1.44") == "1.44");
  CHECK(docker::negotiate_api_version("1.52") == "1.44");  // Docker 29
  CHECK(docker::negotiate_api_version("2.0") == "1.44");
  CHECK_FALSE(docker::negotiate_api_version("1.40"));
  CHECK_FALSE(docker::negotiate_api_version("1.9"));
  CHECK_FALSE(docker::negotiate_api_version(""));
  CHECK_FALSE(docker::negotiate_api_version("1."));
  CHECK_FALSE(docker::negotiate_api_version("x.41"));
  CHECK_FALSE(docker::negotiate_api_version("1.41.2"));
}

TEST_CASE("the managed filters name the label's key and value") {
  CHECK(Json::parse(docker::managed_containers_filter()) ==
        Json{{"label", {"io.container-director.managed=true"}}});
  CHECK(Json::parse(docker::managed_events_filter()) ==
        Json{{"type", {"container"}}, {"label", {"io.container-director.managed=true"}}});
}

TEST_CASE("a spec becomes Docker's create body") {
  const Json body = Json::parse(docker::create_body(alice_spec()));
  CHECK(body["Image"] == "codercom/code-server:latest");
  CHECK(body["Cmd"] == Json{"code-server", "--bind-addr", "0.0.0.0:8080"});
  CHECK(body["Env"] == Json{"USER=alice"});
  CHECK(body["Labels"]["io.container-director.managed"] == "true");
  CHECK(body["Labels"]["io.container-director.label"] == "alice");
  CHECK(body["Labels"]["io.container-director.user"] == "Alice");
  CHECK(body["Healthcheck"] == Json{{"Test", {"CMD-SHELL", "curl -fs http://localhost:8080/healthz"}},
                                    {"Interval", 5'000'000'000LL},
                                    {"Timeout", 3'000'000'000LL},
                                    {"StartPeriod", 1'500'000'000LL},
                                    {"Retries", 4}});
  const Json& host = body["HostConfig"];
  CHECK(host["Memory"] == 2LL << 30);
  CHECK(host["NanoCpus"] == 1'500'000'000LL);
  CHECK(host["PidsLimit"] == 512);
  CHECK(host["Mounts"] == Json::array({{{"Type", "volume"}, {"Source", "director-home-alice"}, {"Target", "/home/coder"}}}));
  CHECK(host["RestartPolicy"] == Json{{"Name", "unless-stopped"}});
  CHECK(host["NetworkMode"] == "director-users");
  CHECK(body["NetworkingConfig"] == Json{{"EndpointsConfig", {{"director-users", {{"Aliases", {"vscode-alice"}}}}}}});
}

TEST_CASE("a minimal spec leaves the image's command, limits and network alone") {
  core::ContainerSpec spec;
  spec.name = "vscode-bob";
  spec.image = "busybox";
  const Json body = Json::parse(docker::create_body(spec));
  CHECK_FALSE(body.contains("Cmd"));
  CHECK_FALSE(body.contains("Healthcheck"));
  CHECK_FALSE(body.contains("NetworkingConfig"));
  CHECK(body["HostConfig"] == Json{{"RestartPolicy", {{"Name", "no"}}}});
}

TEST_CASE("network host or none is a NetworkMode without aliases, and a check of several words is CMD") {
  auto spec = alice_spec();
  spec.network = "host";
  spec.network_aliases.clear();  // what core::render gives for host and none
  spec.health_check.command = {"wget", "-q", "http://127.0.0.1:8080/"};
  const Json body = Json::parse(docker::create_body(spec));
  CHECK(body["HostConfig"]["NetworkMode"] == "host");
  CHECK_FALSE(body.contains("NetworkingConfig"));
  CHECK(body["Healthcheck"]["Test"] == Json{"CMD", "wget", "-q", "http://127.0.0.1:8080/"});
}

TEST_CASE("a username that is not UTF-8 is replaced in the bodies, never thrown on") {
  auto spec = alice_spec();
  spec.labels["io.container-director.user"] = "al\xffice";
  spec.environment.push_back("DIRECTOR_USER=al\xffice");
  const Json body = Json::parse(docker::create_body(spec));
  CHECK(body["Labels"]["io.container-director.user"] == "al\xef\xbf\xbdice");  // U+FFFD
  CHECK(Json::parse(docker::volume_create_body(spec))["Labels"]["io.container-director.user"] == "al\xef\xbf\xbdice");
}

TEST_CASE("the volume is created with the container's labels") {
  const Json body = Json::parse(docker::volume_create_body(alice_spec()));
  CHECK(body["Name"] == "director-home-alice");
  CHECK(body["Labels"]["io.container-director.managed"] == "true");
  CHECK(body["Labels"]["io.container-director.label"] == "alice");
}

TEST_CASE("inspect JSON becomes a ContainerStatus (Podman 4.3)") {
  SECTION("running, health starting") {
    const auto status = docker::parse_inspect(fixture("podman-4.3-inspect-running-healthy.json"));
    REQUIRE(status);
    CHECK(status->id == "c9f5f4b81ca44171df264bef267083db401aa228bd4791cc4aa2c36e1db37c90");
    CHECK(status->name == "vscode-alice");
    CHECK(status->managed);
    CHECK(status->label == "alice");
    CHECK(status->username == "alice");
    CHECK(status->state == core::ContainerState::running);
    CHECK(status->health == core::Health::healthy);
    CHECK_FALSE(status->oom_killed);
  }
  SECTION("exited 137") {
    const auto status = docker::parse_inspect(fixture("podman-4.3-inspect-exited.json"));
    REQUIRE(status);
    CHECK(status->state == core::ContainerState::exited);
    CHECK(status->exit_code == 137);
  }
  SECTION("no labels: not managed") {
    const auto status = docker::parse_inspect(R"({"Id":"abc","Name":"/x","Config":{"Labels":null},"State":{"Status":"created"}})");
    REQUIRE(status);
    CHECK_FALSE(status->managed);
    CHECK(status->state == core::ContainerState::created);
    CHECK(status->health == core::Health::none);
  }
  SECTION("State.Error (a start the runtime could not make): kept for the page, bounded") {
    nlohmann::json inspect = nlohmann::json::parse(R"({"Id":"abc","Name":"/x","Config":{"Labels":null},"State":{"Status":"exited","ExitCode":127}})");
    inspect["State"]["Error"] = "OCI runtime create failed: exec: \"serve\": not found";
    CHECK(docker::parse_inspect(inspect.dump())->error == "OCI runtime create failed: exec: \"serve\": not found");
    inspect["State"]["Error"] = std::string(2000, 'e');
    CHECK(docker::parse_inspect(inspect.dump())->error.size() == core::max_runtime_message);
  }
  SECTION("not a container") {
    CHECK_FALSE(docker::parse_inspect("[]"));
    CHECK_FALSE(docker::parse_inspect("{\"message\":\"no\"}"));
    CHECK_FALSE(docker::parse_inspect("{\"Id\":"));
  }
}

TEST_CASE("list rows become statuses (Podman 4.3, and Docker's health in Status)") {
  const auto rows = docker::parse_list(fixture("podman-4.3-list-managed.json"));
  REQUIRE(rows);
  REQUIRE(rows->size() == 1);
  CHECK(rows->front().name == "vscode-alice");
  CHECK(rows->front().managed);
  CHECK(rows->front().label == "alice");
  CHECK(rows->front().state == core::ContainerState::running);

  const auto docker_rows = docker::parse_list(R"json([
    {"Id":"a","Names":["/vscode-a"],"Labels":{"io.container-director.managed":"true"},"State":"running","Status":"Up 2 minutes (healthy)"},
    {"Id":"b","Names":["/vscode-b"],"Labels":{},"State":"running","Status":"Up 5 seconds (health: starting)"},
    {"Id":"c","Names":["/vscode-c"],"State":"exited","Status":"Exited (137) 2 seconds ago"},
    "junk", {"Names":["/no-id"]}])json");
  REQUIRE(docker_rows);
  REQUIRE(docker_rows->size() == 3);
  CHECK((*docker_rows)[0].health == core::Health::healthy);
  CHECK((*docker_rows)[1].health == core::Health::starting);
  CHECK_FALSE((*docker_rows)[1].managed);
  CHECK((*docker_rows)[2].exit_code == 137);
  CHECK_FALSE(docker::parse_list("{}"));
}

TEST_CASE("an image's own health check") {
  CHECK(docker::parse_image_has_health_check(R"({"Config":{"Healthcheck":{"Test":["CMD-SHELL","true"]}}})") == true);
  CHECK(docker::parse_image_has_health_check(R"({"Config":{"Healthcheck":{"Test":["NONE"]}}})") == false);
  CHECK(docker::parse_image_has_health_check(R"({"Config":{"Env":["PATH=/bin"]}})") == false);
  CHECK_FALSE(docker::parse_image_has_health_check("nope"));
}

TEST_CASE("events of managed containers become ContainerEvents (Podman 4.3)") {
  const std::string id = "c9f5f4b81ca44171df264bef267083db401aa228bd4791cc4aa2c36e1db37c90";
  SECTION("start") {
    const auto event = docker::parse_event(fixture("podman-4.3-event-start.json"));
    REQUIRE(event);
    CHECK(event->kind == core::EventKind::started);
    CHECK(event->id == id);
    CHECK(event->label == "alice");
    CHECK(event->username == "alice");
  }
  SECTION("die, with its exit code") {
    const auto event = docker::parse_event(fixture("podman-4.3-event-die.json"));
    REQUIRE(event);
    CHECK(event->kind == core::EventKind::died);
    CHECK(event->exit_code == 137);
  }
  SECTION("health_status with HealthStatus") {
    const auto event = docker::parse_event(fixture("podman-4.3-event-health_status.json"));
    REQUIRE(event);
    CHECK(event->kind == core::EventKind::health);
    CHECK(event->health == core::Health::starting);  // what Podman 4.3 sent, before the check's result
  }
  SECTION("remove is destroyed") {
    const auto event = docker::parse_event(fixture("podman-4.3-event-remove.json"));
    REQUIRE(event);
    CHECK(event->kind == core::EventKind::destroyed);
    CHECK(event->username == "alice");  // a removed container's labels still come with its event
  }
}

TEST_CASE("Docker's event forms") {
  const auto docker_event = [](std::string action, std::string attributes = "") {
    return R"({"Type":"container","Action":")" + action + R"(","Actor":{"ID":"abc","Attributes":{"io.container-director.managed":"true","io.container-director.label":"bob")" +
           attributes + R"(}},"scope":"local","time":1})";
  };
  CHECK(docker::parse_event(docker_event("create"))->kind == core::EventKind::created);
  CHECK(docker::parse_event(docker_event("create"))->username.empty());
  const auto escaped = docker::parse_event(docker_event("stop", R"(,"io.container-director.user":"Bob.Doe@Example.com")"));
  REQUIRE(escaped);
  CHECK(escaped->username == "Bob.Doe@Example.com");
  CHECK(docker::parse_event(docker_event("stop"))->kind == core::EventKind::stopped);
  CHECK(docker::parse_event(docker_event("destroy"))->kind == core::EventKind::destroyed);
  const auto healthy = docker::parse_event(docker_event("health_status: healthy"));
  REQUIRE(healthy);
  CHECK(healthy->kind == core::EventKind::health);
  CHECK(healthy->health == core::Health::healthy);
  CHECK(docker::parse_event(docker_event("health_status: unhealthy"))->health == core::Health::unhealthy);
  const auto died = docker::parse_event(docker_event("die", R"(,"exitCode":"0")"));
  REQUIRE(died);
  CHECK(died->exit_code == 0);
  CHECK_FALSE(docker::parse_event(docker_event("die"))->exit_code);
  CHECK_FALSE(docker::parse_event(docker_event("exec_start: sh")));  // not followed
  CHECK_FALSE(docker::parse_event(docker_event("kill")));
}

TEST_CASE("events of other containers, other types and junk are dropped") {
  CHECK_FALSE(docker::parse_event(R"({"Type":"container","Action":"start","Actor":{"ID":"abc","Attributes":{"name":"x"}}})"));
  CHECK_FALSE(docker::parse_event(
      R"({"Type":"container","Action":"start","Actor":{"ID":"abc","Attributes":{"io.container-director.managed":"false"}}})"));
  CHECK_FALSE(docker::parse_event(
      R"({"Type":"volume","Action":"create","Actor":{"ID":"v","Attributes":{"io.container-director.managed":"true"}}})"));
  CHECK_FALSE(docker::parse_event("not json"));
  CHECK_FALSE(docker::parse_event("[1,2]"));
  CHECK_FALSE(docker::parse_event(""));
}

TEST_CASE("HTTP failures are classified") {

  using CallError = core::CallError;
  using Call = docker::Call;
  CHECK(docker::classify(Call::other, 500, "boom") == CallError::unavailable);
  CHECK(docker::classify(Call::other, 503, "") == CallError::unavailable);
  CHECK(docker::classify(Call::other, 404, "no such container") == CallError::not_found);
  CHECK(docker::classify(Call::create, 404, "No such image: busybox:latest") == CallError::image_missing);
  CHECK(docker::classify(Call::create, 404, "no such image: localhost/nosuch:latest: image not known") ==
        CallError::image_missing);
  CHECK(docker::classify(Call::create, 404, "network director-users not found") == CallError::not_found);
  CHECK(docker::classify(Call::create, 409, "Conflict. The container name \"/x\" is already in use") == CallError::conflict);
  CHECK(docker::classify(Call::create, 500, "the container name \"plain\" is already in use by b11: that name is already in use") ==
        CallError::conflict);  // Podman 4.3
  CHECK(docker::classify(Call::other, 500, "that name is already in use") == CallError::unavailable);
  CHECK(docker::classify(Call::create, 400, "invalid memory") == CallError::refused);
}

TEST_CASE("a pull's progress stream reports its first error (Podman 4.3)") {
  const auto error = docker::pull_error(fixture("podman-4.3-pull-missing.ndjson"));
  REQUIRE(error);
  CHECK(error->find("initializing source docker://localhost/nosuch:latest") == 0);
  CHECK_FALSE(docker::pull_error("{\"status\":\"Pulling from library/busybox\"}\n{\"status\":\"Download complete\"}\n"));
  CHECK(docker::pull_error("{\"status\":\"x\"}\n{\"errorDetail\":{\"message\":\"manifest unknown\"}}\n") == "manifest unknown");
  CHECK_FALSE(docker::pull_error("garbage\n\n"));
}

TEST_CASE("the logs' frames are undone, and a TTY's raw output is kept") {
  using namespace std::string_literals;
  const std::string framed = "\x01\0\0\0\0\0\0\x06hello\n"s + "\x02\0\0\0\0\0\0\x04"s + "err\n";
  CHECK(docker::demultiplex_logs(framed) == "hello\nerr\n");
  CHECK(docker::demultiplex_logs("plain tty output\n") == "plain tty output\n");
  CHECK(docker::demultiplex_logs("") == "");
  // A frame cut short keeps what arrived.
  CHECK(docker::demultiplex_logs("\x01\0\0\0\0\0\0\x10"s + "short") == "short");
  // A length beyond 255 (big-endian).
  const std::string long_payload(300, 'x');
  CHECK(docker::demultiplex_logs("\x01\0\0\0\0\0\x01\x2c"s + long_payload) == long_payload);
}
