// kube_api (spawner/src/runtime/kube_api.hpp): the Kubernetes API's JSON to and from the core's
// types, and the container events derived from watch events, on objects written from the API
// reference (tests/data/kube-api).
#include "runtime/kube_api.hpp"

#include "api_fixture.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <string>

namespace kube = director::spawner::runtime::kube;
namespace core = director::spawner::core;
using Json = nlohmann::json;

namespace {

std::string fixture(const std::string& name) { return director::test::api_fixture("kube-api", name); }

core::ContainerSpec alice_spec() {
  core::ContainerSpec spec;
  spec.name = "vscode-alice";
  spec.image = "codercom/code-server:4.96.4";
  spec.command = {"--bind-addr", "0.0.0.0:8080"};
  spec.environment = {"USER=alice", "EMPTY=", "BARE"};
  spec.labels = {{std::string(core::managed_label), "true"}, {std::string(core::label_label), "alice"},
                 {std::string(core::user_label), "Alice@Example.com"}};
  spec.volume_name = "director-home-alice";
  spec.volume_mount = "/home/coder";
  spec.memory_bytes = 2ULL << 30;
  spec.nano_cpus = 1'500'000'000;
  spec.memory_request_bytes = 512ULL << 20;
  spec.nano_cpus_request = 250'000'000;
  spec.restart = core::RestartPolicy::unless_stopped;
  spec.health_check.command = {"curl -fs http://localhost:8080/healthz"};
  spec.health_check.interval = std::chrono::milliseconds(5000);
  spec.health_check.timeout = std::chrono::milliseconds(2500);
  spec.health_check.retries = 4;
  return spec;
}

kube::ObjectSettings settings() { return {.container_port = 8080, .volume_size = "10Gi", .storage_class = ""}; }

void check_identity(const Json& metadata, const std::string& name) {
  CHECK(metadata["name"] == name);
  CHECK(metadata["labels"] == Json{{"io.container-director.managed", "true"}, {"io.container-director.label", "alice"}});
  CHECK(metadata["annotations"]["io.container-director.user"] == "Alice@Example.com");
}

// A Pod line of a watch stream: `pod` with its type.
std::string watch_line(std::string_view type, const Json& object) {
  return Json{{"type", type}, {"object", object}}.dump();
}

Json pod_fixture(const std::string& name) { return Json::parse(fixture(name)); }

Json service_object() {
  Json service = Json::parse(kube::service_body(alice_spec(), settings()));
  service["metadata"]["resourceVersion"] = "100";
  return service;
}

// A Pod of alice as the API server reports it: `phase`, Ready or not, restarts.
Json pod_object(std::string_view phase, bool ready, int restarts = 0) {
  Json pod = pod_fixture("pod-running-ready.json");
  pod["status"]["phase"] = phase;
  for (auto& condition : pod["status"]["conditions"]) {
    if (condition["type"] == "Ready") condition["status"] = ready ? "True" : "False";
  }
  pod["status"]["containerStatuses"][0]["restartCount"] = restarts;
  if (phase == "Pending") pod["status"]["containerStatuses"][0]["state"] = {{"waiting", {{"reason", "ContainerCreating"}}}};
  return pod;
}

std::vector<core::ContainerEvent> feed(kube::EventTracker& tracker, std::string_view type, const Json& object) {
  const auto event = kube::parse_watch_event(watch_line(type, object));
  REQUIRE(event);
  return tracker.on_event(*event);
}

std::vector<std::string> kinds(const std::vector<core::ContainerEvent>& events) {
  std::vector<std::string> names;
  for (const auto& event : events) {
    names.emplace_back(event.kind == core::EventKind::created ? "created" : core::to_string(event.kind));
  }
  return names;
}

using Names = std::vector<std::string>;

}  // namespace

TEST_CASE("the PVC: ReadWriteOnce, the volume size, the storage class only when given, labelled") {
  const Json claim = Json::parse(kube::persistent_volume_claim_body(alice_spec(), settings()));
  CHECK(claim["kind"] == "PersistentVolumeClaim");
  check_identity(claim["metadata"], "director-home-alice");
  CHECK(claim["spec"]["accessModes"] == Json{"ReadWriteOnce"});
  CHECK(claim["spec"]["resources"]["requests"]["storage"] == "10Gi");
  CHECK_FALSE(claim["spec"].contains("storageClassName"));
  auto with_class = settings();
  with_class.storage_class = "fast-ssd";
  CHECK(Json::parse(kube::persistent_volume_claim_body(alice_spec(), with_class))["spec"]["storageClassName"] ==
        "fast-ssd");
}

TEST_CASE("the Pod's securityContext: baseline none but fsGroup, restricted what the standard requires") {
  auto baseline = settings();
  baseline.fs_group = 1000;
  const Json plain = Json::parse(kube::pod_body(alice_spec(), baseline));
  CHECK(plain["spec"]["securityContext"] == Json::parse(R"({"fsGroup":1000})"));
  CHECK_FALSE(plain["spec"]["containers"][0].contains("securityContext"));

  auto restricted = baseline;
  restricted.restricted = true;
  const Json pod = Json::parse(kube::pod_body(alice_spec(), restricted));
  CHECK(pod["spec"]["securityContext"] ==
        Json::parse(R"({"fsGroup":1000,"runAsNonRoot":true,"seccompProfile":{"type":"RuntimeDefault"}})"));
  CHECK(pod["spec"]["containers"][0]["securityContext"] ==
        Json::parse(R"({"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}})"));
  restricted.fs_group = 0;
  CHECK(Json::parse(kube::pod_body(alice_spec(), restricted))["spec"]["securityContext"] ==
        Json::parse(R"({"runAsNonRoot":true,"seccompProfile":{"type":"RuntimeDefault"}})"));
}

TEST_CASE("the Pod: one container from the spec, limits and requests, the probe, the claim, no token") {
  const Json pod = Json::parse(kube::pod_body(alice_spec(), settings()));
  CHECK(pod["kind"] == "Pod");
  CHECK(pod["apiVersion"] == "v1");
  check_identity(pod["metadata"], "vscode-alice");
  const Json& spec = pod["spec"];
  CHECK(spec["restartPolicy"] == "Always");
  CHECK(spec["automountServiceAccountToken"] == false);
  CHECK(spec["enableServiceLinks"] == false);
  CHECK_FALSE(spec.contains("securityContext"));  // no fsGroup unless given
  auto with_group = settings();
  with_group.fs_group = 1000;
  CHECK(Json::parse(kube::pod_body(alice_spec(), with_group))["spec"]["securityContext"] ==
        Json::parse(R"({"fsGroup":1000})"));
  CHECK(spec["volumes"] == Json::parse(R"([{"name":"home","persistentVolumeClaim":{"claimName":"director-home-alice"}}])"));
  REQUIRE(spec["containers"].size() == 1);
  const Json& container = spec["containers"][0];
  CHECK(container["name"] == "main");
  CHECK(container["image"] == "codercom/code-server:4.96.4");
  CHECK(container["imagePullPolicy"] == "IfNotPresent");
  CHECK_FALSE(container.contains("command"));  // the image's ENTRYPOINT stays, as with Docker's Cmd
  CHECK(container["args"] == Json{"--bind-addr", "0.0.0.0:8080"});
  CHECK(container["env"] == Json::parse(R"([{"name":"USER","value":"alice"},{"name":"EMPTY","value":""},
                                            {"name":"BARE","value":""}])"));
  CHECK(container["ports"] == Json::parse(R"([{"name":"http","containerPort":8080,"protocol":"TCP"}])"));
  CHECK(container["resources"] == Json::parse(R"({"limits":{"memory":"2147483648","cpu":"1500m"},
                                                 "requests":{"memory":"536870912","cpu":"250m"}})"));
  CHECK(container["volumeMounts"] == Json::parse(R"([{"name":"home","mountPath":"/home/coder"}])"));
  CHECK(container["readinessProbe"] ==
        Json::parse(R"({"exec":{"command":["/bin/sh","-c","curl -fs http://localhost:8080/healthz"]},
                        "periodSeconds":5,"timeoutSeconds":3,"failureThreshold":4,"successThreshold":1})"));
}

TEST_CASE("the Pod: every $ in args and env values doubled, so the kubelet expands nothing") {
  auto spec = alice_spec();
  spec.command = {"--user", "a$(HOME)$$b", "$"};
  spec.environment = {"OWNER=a$(HOME)$$b", "PLAIN=x"};
  const Json container = Json::parse(kube::pod_body(spec, settings()))["spec"]["containers"][0];
  CHECK(container["args"] == Json{"--user", "a$$(HOME)$$$$b", "$$"});
  CHECK(container["env"] == Json::parse(R"([{"name":"OWNER","value":"a$$(HOME)$$$$b"},{"name":"PLAIN","value":"x"}])"));
  CHECK_FALSE(container.contains("command"));
}

TEST_CASE("the Pod's variants: restart policies, no pulls, no limits, an exec probe, no volume") {
  auto spec = alice_spec();
  spec.memory_bytes = spec.nano_cpus = spec.memory_request_bytes = spec.nano_cpus_request = 0;
  spec.health_check.command = {"test", "-f", "/tmp/ready"};
  spec.volume_name.clear();
  spec.command.clear();
  spec.environment.clear();
  auto no_pull = settings();
  no_pull.pull_missing_images = false;
  const std::pair<core::RestartPolicy, std::string> policies[] = {{core::RestartPolicy::no, "Never"},
                                                                  {core::RestartPolicy::on_failure, "OnFailure"},
                                                                  {core::RestartPolicy::unless_stopped, "Always"},
                                                                  {core::RestartPolicy::always, "Always"}};
  for (const auto& [policy, name] : policies) {
    spec.restart = policy;
    CHECK(Json::parse(kube::pod_body(spec, no_pull))["spec"]["restartPolicy"] == name);
  }
  const Json pod = Json::parse(kube::pod_body(spec, no_pull));
  const Json& container = pod["spec"]["containers"][0];
  CHECK(container["imagePullPolicy"] == "Never");
  CHECK_FALSE(container.contains("resources"));
  CHECK_FALSE(container.contains("args"));
  CHECK_FALSE(container.contains("env"));
  CHECK_FALSE(container.contains("volumeMounts"));
  CHECK_FALSE(pod["spec"].contains("volumes"));
  CHECK(container["readinessProbe"]["exec"]["command"] == Json{"test", "-f", "/tmp/ready"});
  spec.health_check.command.clear();
  CHECK_FALSE(Json::parse(kube::pod_body(spec, no_pull))["spec"]["containers"][0].contains("readinessProbe"));
}

TEST_CASE("times: RFC 3339 in UTC as the API writes metav1.Time") {
  using namespace std::chrono;
  const auto time = kube::parse_time("2026-11-29T06:05:33Z");
  REQUIRE(time);
  CHECK(*time == sys_days(year(2026) / 11 / 29) + hours(6) + minutes(5) + seconds(33));
  CHECK(kube::parse_time("2024-02-29T23:59:59.123456Z") == sys_days(year(2024) / 2 / 29) + hours(23) + minutes(59) + seconds(59));
  CHECK(kube::parse_time("1970-01-01T00:00:00Z") == system_clock::time_point{});
  for (const char* bad : {"", "2026-11-29", "2026-11-29T06:05:33", "2026-11-29T06:05:33+01:00", "2026-02-30T00:00:00Z",
                          "2026-11-29T24:00:00Z", "2026-11-29T06:05:33.Z", "2026-11-29 06:05:33Z", "2026-1a-29T06:05:33Z"}) {
    INFO(bad);
    CHECK_FALSE(kube::parse_time(bad));
  }
  const auto terminating = kube::parse_pod(fixture("pod-terminating.json"));
  REQUIRE(terminating);
  CHECK(terminating->deletion_timestamp == "2026-11-29T02:30:30Z");
  CHECK(terminating->deletion_time == sys_days(year(2026) / 11 / 29) + hours(2) + minutes(30) + seconds(30));
}

TEST_CASE("times: the HTTP Date header's IMF-fixdate") {
  using namespace std::chrono;
  CHECK(kube::parse_http_date("Sun, 29 Nov 2026 06:05:33 GMT") == sys_days(year(2026) / 11 / 29) + hours(6) + minutes(5) + seconds(33));
  CHECK(kube::parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT") == system_clock::time_point{});
  CHECK(kube::parse_http_date("Mon, 31 Dec 2029 23:59:59 GMT") == sys_days(year(2029) / 12 / 31) + hours(23) + minutes(59) + seconds(59));
  for (const char* bad : {"", "Sun, 29 Nov 2026 06:05:33 UTC", "Sunday, 29-Nov-26 06:05:33 GMT", "Sun Nov 29 06:05:33 2026",
                          "Sun, 30 Feb 2026 06:05:33 GMT", "Sun, 29 Nox 2026 06:05:33 GMT", "Sun, 29 ovD 2026 06:05:33 GMT",
                          "Sun, 29 Nov 2026 24:05:33 GMT", "Sun, 2x Nov 2026 06:05:33 GMT"}) {
    INFO(bad);
    CHECK_FALSE(kube::parse_http_date(bad));
  }
}

TEST_CASE("quantities: memory in bytes, CPU in millicores rounded up") {
  CHECK(kube::memory_quantity(1) == "1");
  CHECK(kube::cpu_quantity(1'000'000'000) == "1000m");
  CHECK(kube::cpu_quantity(1) == "1m");
  CHECK(kube::cpu_quantity(2'500'000) == "3m");
}

TEST_CASE("the Service: ClusterIP on the label, one port, no Pod manifest") {
  const Json service = Json::parse(kube::service_body(alice_spec(), settings()));
  CHECK(service["kind"] == "Service");
  check_identity(service["metadata"], "vscode-alice");
  CHECK(service["spec"]["type"] == "ClusterIP");
  CHECK(service["spec"]["selector"] == Json{{"io.container-director.managed", "true"}, {"io.container-director.label", "alice"}});
  CHECK(service["spec"]["ports"] ==
        Json::parse(R"([{"name":"http","port":8080,"targetPort":8080,"protocol":"TCP"}])"));
  const auto parsed = kube::parse_service(service.dump());
  REQUIRE(parsed);
  CHECK(Json(service["metadata"]["annotations"]) == Json{{"io.container-director.user", "Alice@Example.com"}});
  CHECK(parsed->name == "vscode-alice");
  CHECK(parsed->managed);
  CHECK(parsed->label == "alice");
  CHECK(parsed->username == "Alice@Example.com");
}

TEST_CASE("a Pod's status in the core's terms") {
  SECTION("Running and Ready, with a readiness probe: running, healthy") {
    const auto pod = kube::parse_pod(fixture("pod-running-ready.json"));
    REQUIRE(pod);
    CHECK(pod->status.id == "vscode-alice");
    CHECK(pod->status.name == "vscode-alice");
    CHECK(pod->status.managed);
    CHECK(pod->status.label == "alice");
    CHECK(pod->status.username == "Alice@Example.com");
    CHECK(pod->status.state == core::ContainerState::running);
    CHECK(pod->status.health == core::Health::healthy);
    CHECK(pod->restart_count == 1);
    CHECK(pod->last_exit_code == 137);
    CHECK(pod->resource_version == "48213");
  }
  SECTION("Running, not Ready: starting (Kubernetes has no unhealthy); no probe: no health") {
    Json pod = pod_object("Running", false);
    CHECK(kube::parse_pod(pod.dump())->status.health == core::Health::starting);
    pod["spec"]["containers"][0].erase("readinessProbe");
    CHECK(kube::parse_pod(pod.dump())->status.health == core::Health::none);
  }
  SECTION("Pending: created") {
    CHECK(kube::parse_pod(pod_object("Pending", false).dump())->status.state == core::ContainerState::created);
  }
  SECTION("an image that cannot be pulled: exited, with the kubelet's message") {
    const auto pod = kube::parse_pod(fixture("pod-image-pull-backoff.json"));
    REQUIRE(pod);
    CHECK(pod->status.state == core::ContainerState::exited);
    CHECK(pod->status.error == "ImagePullBackOff: Back-off pulling image \"codercom/code-server:no-such-tag\"");
    // The kubelet's message is untrusted (it quotes the registry): bounded as core::runtime_message keeps it.
    Json long_message = Json::parse(fixture("pod-image-pull-backoff.json"));
    long_message["status"]["containerStatuses"][0]["state"]["waiting"]["message"] = std::string(4000, 'm');
    const auto bounded = kube::parse_pod(long_message.dump())->status.error;
    CHECK(bounded.size() == core::max_runtime_message);
    CHECK(bounded.starts_with("ImagePullBackOff: mmm"));
    CHECK(bounded.ends_with("m..."));
    for (const std::string reason : {"ErrImagePull", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError"}) {
      Json other = Json::parse(fixture("pod-image-pull-backoff.json"));
      other["status"]["containerStatuses"][0]["state"]["waiting"] = {{"reason", reason}};
      CHECK(kube::parse_pod(other.dump())->status.error == reason);
    }
  }
  SECTION("Failed with a terminated container: exited with its code, OOM killed") {
    const auto pod = kube::parse_pod(fixture("pod-failed-oom.json"));
    REQUIRE(pod);
    CHECK(pod->status.state == core::ContainerState::exited);
    CHECK(pod->status.exit_code == 137);
    CHECK(pod->status.oom_killed);
    CHECK(pod->terminated_exit_code == 137);
  }
  SECTION("Failed without a container that ended (the node was lost): the Pod's reason") {
    Json pod = pod_object("Failed", false);
    pod["status"]["reason"] = "NodeLost";
    pod["status"]["message"] = "the node was lost";
    pod["status"].erase("containerStatuses");
    const auto parsed = kube::parse_pod(pod.dump());
    CHECK(parsed->status.state == core::ContainerState::exited);
    CHECK(parsed->status.error == "NodeLost: the node was lost");
  }
  SECTION("Succeeded: exited 0") {
    Json pod = pod_object("Succeeded", false);
    pod["status"]["containerStatuses"][0]["state"] = {{"terminated", {{"exitCode", 0}, {"reason", "Completed"}}}};
    CHECK(kube::parse_pod(pod.dump())->status.state == core::ContainerState::exited);
    CHECK(kube::parse_pod(pod.dump())->status.exit_code == 0);
  }
  SECTION("CrashLoopBackOff: restarting, with the last run's code") {
    Json pod = pod_object("Running", false, 3);
    pod["status"]["containerStatuses"][0]["state"] = {{"waiting", {{"reason", "CrashLoopBackOff"}}}};
    const auto parsed = kube::parse_pod(pod.dump());
    CHECK(parsed->status.state == core::ContainerState::restarting);
    CHECK(parsed->status.exit_code == 137);
  }
  SECTION("deletionTimestamp set: exited (a stop under way), and what it was before") {
    const auto pod = kube::parse_pod(fixture("pod-terminating.json"));
    REQUIRE(pod);
    CHECK(pod->being_deleted);
    CHECK(pod->status.state == core::ContainerState::exited);
    CHECK(pod->state_before_deletion == core::ContainerState::running);
  }
  SECTION("bad input: nullopt, never a throw") {
    for (const char* text : {"", "null", "[]", "{", R"({"metadata":{}})", R"({"metadata":{"name":7}})"}) {
      CHECK_FALSE(kube::parse_pod(text));
      CHECK_FALSE(kube::parse_service(text));
    }
    Json odd = pod_object("Running", true);
    odd["status"]["containerStatuses"] = "not a list";
    odd["status"]["conditions"] = Json::array({7, "x"});
    odd["spec"]["containers"] = Json::object();
    REQUIRE(kube::parse_pod(odd.dump()));
    CHECK(kube::parse_pod(odd.dump())->status.health == core::Health::none);
  }
}

TEST_CASE("lists joined by name: a stopped user is its Service alone, exited 0") {
  Json services = {{"kind", "ServiceList"}, {"metadata", {{"resourceVersion", "500"}}}, {"items", Json::array()}};
  services["items"].push_back(service_object());
  Json bob = service_object();
  bob["metadata"]["name"] = "vscode-bob";
  bob["metadata"]["labels"]["io.container-director.label"] = "bob";
  bob["metadata"]["annotations"]["io.container-director.user"] = "bob";
  services["items"].push_back(bob);
  services["items"].push_back("not an object");
  Json pods = {{"kind", "PodList"}, {"metadata", {{"resourceVersion", "501"}}}, {"items", Json::array()}};
  pods["items"].push_back(pod_fixture("pod-running-ready.json"));
  Json orphan = pod_object("Pending", false);
  orphan["metadata"]["name"] = "vscode-carol";
  orphan["metadata"]["labels"]["io.container-director.label"] = "carol";
  orphan["metadata"]["annotations"]["io.container-director.user"] = "carol";
  pods["items"].push_back(orphan);

  const auto listed_services = kube::parse_service_list(services.dump());
  const auto listed_pods = kube::parse_pod_list(pods.dump());
  REQUIRE(listed_services);
  REQUIRE(listed_pods);
  CHECK(listed_services->resource_version == "500");
  CHECK(listed_pods->resource_version == "501");
  CHECK(listed_services->items.size() == 2);
  CHECK(listed_services->continue_token.empty());
  services["metadata"]["continue"] = "opaque-token";
  CHECK(kube::parse_service_list(services.dump())->continue_token == "opaque-token");
  const auto statuses = kube::join(listed_services->items, listed_pods->items);
  REQUIRE(statuses.size() == 3);
  CHECK(statuses[0].name == "vscode-alice");
  CHECK(statuses[0].state == core::ContainerState::running);
  CHECK(statuses[0].health == core::Health::healthy);
  CHECK(statuses[1].name == "vscode-bob");
  CHECK(statuses[1].id == "vscode-bob");
  CHECK(statuses[1].managed);
  CHECK(statuses[1].label == "bob");
  CHECK(statuses[1].username == "bob");
  CHECK(statuses[1].state == core::ContainerState::exited);
  CHECK(statuses[1].exit_code == 0);
  CHECK(statuses[2].name == "vscode-carol");
  CHECK(statuses[2].state == core::ContainerState::created);

  CHECK_FALSE(kube::parse_pod_list("[]"));
  CHECK_FALSE(kube::parse_pod_list(R"({"items":7})"));
  CHECK(kube::parse_pod_list(R"({"items":null,"metadata":{"resourceVersion":"9"}})")->items.empty());
}

TEST_CASE("Status errors, their classes and messages") {
  const auto exists = kube::parse_status(fixture("status-already-exists.json"));
  REQUIRE(exists);
  CHECK(exists->code == 409);
  CHECK(exists->reason == "AlreadyExists");
  CHECK(exists->message == "services \"vscode-alice\" already exists");
  CHECK_FALSE(kube::parse_status(R"({"kind":"Pod"})"));
  CHECK_FALSE(kube::parse_status("<html>"));

  CHECK(kube::classify(500) == core::CallError::unavailable);
  CHECK(kube::classify(503) == core::CallError::unavailable);
  CHECK(kube::classify(429) == core::CallError::unavailable);
  CHECK(kube::classify(404) == core::CallError::not_found);
  CHECK(kube::classify(409) == core::CallError::conflict);
  CHECK(kube::classify(401) == core::CallError::refused);
  CHECK(kube::classify(403) == core::CallError::refused);
  CHECK(kube::classify(422) == core::CallError::refused);
  CHECK(kube::classify(400) == core::CallError::refused);

  const auto forbidden = kube::parse_status(fixture("status-forbidden.json"));
  REQUIRE(forbidden);
  const std::string message = kube::failure_message(403, forbidden->message);
  CHECK(message.starts_with("pods is forbidden"));
  CHECK(message.find("RBAC") != std::string::npos);
  CHECK(kube::failure_message(401, "Unauthorized").find("token") != std::string::npos);
  const std::string quota = R"(pods "vscode-alice" is forbidden: exceeded quota: users, requested: limits.memory=2Gi)";
  CHECK(kube::failure_message(403, quota) == quota);
  CHECK(kube::failure_message(409, "x") == "x");
}

TEST_CASE("GET /version names the server") {
  CHECK(kube::parse_version(R"({"major":"1","minor":"30","gitVersion":"v1.30.2"})") == "Kubernetes v1.30.2");
  CHECK_FALSE(kube::parse_version(R"({"major":"1"})"));
  CHECK_FALSE(kube::parse_version("nonsense"));
}

TEST_CASE("watch lines: objects, bookmarks, errors") {
  const auto added = kube::parse_watch_event(watch_line("ADDED", pod_fixture("pod-running-ready.json")));
  REQUIRE(added);
  CHECK(added->type == kube::WatchType::added);
  CHECK(added->resource_version == "48213");
  REQUIRE(added->pod);
  CHECK_FALSE(added->service);

  const auto service = kube::parse_watch_event(watch_line("DELETED", service_object()));
  REQUIRE(service);
  CHECK(service->type == kube::WatchType::deleted);
  REQUIRE(service->service);
  CHECK(service->resource_version == "100");

  const auto bookmark =
      kube::parse_watch_event(R"({"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"12345"}}})");
  REQUIRE(bookmark);
  CHECK(bookmark->type == kube::WatchType::bookmark);
  CHECK(bookmark->resource_version == "12345");

  const auto expired = kube::parse_watch_event(fixture("watch-error-expired.json"));
  REQUIRE(expired);
  CHECK(expired->type == kube::WatchType::error);
  REQUIRE(expired->status);
  CHECK(expired->status->code == 410);
  CHECK(expired->status->reason == "Expired");
  CHECK(expired->status->message == "too old resource version: 48000 (48213)");

  CHECK_FALSE(kube::parse_watch_event(R"({"type":"SOMETHING","object":{}})"));
  CHECK_FALSE(kube::parse_watch_event(R"({"type":"ADDED","object":{"kind":"ConfigMap","metadata":{"name":"x"}}})"));
  CHECK_FALSE(kube::parse_watch_event(R"({"type":"ADDED"})"));
  CHECK_FALSE(kube::parse_watch_event("{"));
  CHECK(kube::parse_watch_event(R"({"type":"ERROR","object":7})")->status);
}

TEST_CASE("watch events become the events Docker would report: a user's whole life") {
  kube::EventTracker tracker;
  CHECK(kinds(feed(tracker, "ADDED", service_object())) == Names{"created"});
  CHECK(kinds(feed(tracker, "MODIFIED", service_object())).empty());

  CHECK(kinds(feed(tracker, "ADDED", pod_object("Pending", false))) == Names{"created"});
  CHECK(kinds(feed(tracker, "MODIFIED", pod_object("Pending", false))).empty());
  // Not Ready at its start: health "starting", as the lifecycle assumes on a start.
  const auto started = feed(tracker, "MODIFIED", pod_object("Running", false));
  CHECK(kinds(started) == Names{"started"});
  CHECK(started[0].id == "vscode-alice");
  CHECK(started[0].label == "alice");
  CHECK(started[0].username == "Alice@Example.com");
  const auto ready = feed(tracker, "MODIFIED", pod_object("Running", true));
  CHECK(kinds(ready) == Names{"health"});
  CHECK(ready[0].health == core::Health::healthy);
  CHECK(kinds(feed(tracker, "MODIFIED", pod_object("Running", true))).empty());

  // A graceful deletion: nothing while the container runs its grace period, stopped when gone.
  Json terminating = pod_object("Running", true);
  terminating["metadata"]["deletionTimestamp"] = "2026-11-29T02:30:30Z";
  CHECK(kinds(feed(tracker, "MODIFIED", terminating)).empty());
  CHECK(kinds(feed(tracker, "DELETED", terminating)) == Names{"stopped"});

  // Started again, then removed: the Pod (grace 0) first, then the Service.
  CHECK(kinds(feed(tracker, "ADDED", pod_object("Pending", false))) == Names{"created"});
  CHECK(kinds(feed(tracker, "MODIFIED", pod_object("Running", true))) == Names{"started", "health"});
  CHECK(kinds(feed(tracker, "DELETED", pod_object("Running", true))) == Names{"stopped"});
  const auto destroyed = feed(tracker, "DELETED", service_object());
  CHECK(kinds(destroyed) == Names{"destroyed"});
  CHECK(destroyed[0].username == "Alice@Example.com");
}

TEST_CASE("a Pod seen before its Service is told right after the Service's created") {
  kube::EventTracker tracker;
  CHECK(feed(tracker, "ADDED", pod_object("Pending", false)).empty());
  CHECK(feed(tracker, "MODIFIED", pod_object("Running", true)).empty());
  CHECK(kinds(feed(tracker, "ADDED", service_object())) == Names{"created", "created", "started", "health"});
  CHECK(kinds(feed(tracker, "DELETED", pod_object("Running", true))) == Names{"stopped"});
}

TEST_CASE("watch events: deaths, restarts, pull failures, Pods seen first when already running") {
  kube::EventTracker tracker;
  CHECK(kinds(feed(tracker, "ADDED", service_object())) == Names{"created"});
  SECTION("running -> Failed: died with the exit code; then deleted: stopped alone") {
    feed(tracker, "ADDED", pod_object("Running", true));
    const auto died = feed(tracker, "MODIFIED", pod_fixture("pod-failed-oom.json"));
    REQUIRE(kinds(died) == Names{"died"});
    CHECK(died[0].exit_code == 137);
    CHECK(died[0].error.empty());  // it ran and ended: its exit code says it
    CHECK(kinds(feed(tracker, "DELETED", pod_fixture("pod-failed-oom.json"))) == Names{"stopped"});
  }
  SECTION("a running Pod deleted as Failed (unseen): died with its code, then stopped") {
    feed(tracker, "ADDED", pod_object("Running", true));
    const auto gone = feed(tracker, "DELETED", pod_fixture("pod-failed-oom.json"));
    REQUIRE(kinds(gone) == Names{"died", "stopped"});
    CHECK(gone[0].exit_code == 137);
  }
  SECTION("the kubelet restarted the container: died (the last run's code), started") {
    feed(tracker, "ADDED", pod_object("Running", true, 0));
    const auto restarted = feed(tracker, "MODIFIED", pod_object("Running", true, 1));
    REQUIRE(kinds(restarted) == Names{"died", "started"});
    CHECK(restarted[0].exit_code == 137);
  }
  SECTION("an image that cannot be pulled: died, before it ever ran, with the kubelet's message") {
    feed(tracker, "ADDED", pod_object("Pending", false));
    const auto died = feed(tracker, "MODIFIED", pod_fixture("pod-image-pull-backoff.json"));
    REQUIRE(kinds(died) == Names{"died"});
    CHECK_FALSE(died[0].exit_code);
    CHECK(died[0].error == "ImagePullBackOff: Back-off pulling image \"codercom/code-server:no-such-tag\"");
    CHECK(kinds(feed(tracker, "MODIFIED", pod_fixture("pod-image-pull-backoff.json"))).empty());
  }
  SECTION("a Pod first seen running: created, started, health") {
    const auto events = feed(tracker, "ADDED", pod_object("Running", true));
    CHECK(kinds(events) == Names{"created", "started", "health"});
  }
  SECTION("a seeded Pod is known: its next change is told as a change") {
    tracker.seed({*kube::parse_service(service_object().dump())}, {*kube::parse_pod(pod_object("Running", false).dump())});
    CHECK(kinds(feed(tracker, "MODIFIED", service_object())).empty());
    CHECK(kinds(feed(tracker, "MODIFIED", pod_object("Running", true))) == Names{"health"});
  }
  SECTION("a Service deleted before its Pod's DELETED came: stopped, destroyed; the late DELETED says nothing") {
    feed(tracker, "ADDED", pod_object("Running", true));
    CHECK(kinds(feed(tracker, "DELETED", service_object())) == Names{"stopped", "destroyed"});
    CHECK(feed(tracker, "DELETED", pod_object("Running", true)).empty());
  }
  SECTION("a Pod's late ADDED after its Service's DELETED says nothing") {
    CHECK(kinds(feed(tracker, "DELETED", service_object())) == Names{"destroyed"});
    CHECK(feed(tracker, "ADDED", pod_object("Pending", false)).empty());
    CHECK(feed(tracker, "DELETED", pod_object("Pending", false)).empty());
  }
  SECTION("unmanaged objects are ignored") {
    Json pod = pod_object("Running", true);
    pod["metadata"]["labels"].erase("io.container-director.managed");
    CHECK(feed(tracker, "ADDED", pod).empty());
  }
}
